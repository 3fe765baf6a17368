"""``python -m polytask``: the command line, as ``torchrun --nproc-per-node N -m polytask train
CONFIG`` launches it (one process per rank)."""

from polytask.cli import main

if __name__ == "__main__":
    main()
