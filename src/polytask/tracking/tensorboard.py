"""TensorBoard: ``torch.utils.tensorboard`` event files in the run folder (``logging:
{tensorboard: true}``; needs ``pip install 'polytask[tensorboard]'``).

The epochs' scalars and images go to ``<run>/tensorboard/``; at the end, the hyperparameters
with the final values (``add_hparams``) to ``<run>/tensorboard/hparams/``, where TensorBoard's
HParams tab finds them. ``tensorboard --logdir <output_dir>`` shows every run of a folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polytask.tracking.base import Param, missing_extra

FOLDER = "tensorboard"
"""The event files' folder inside the run folder."""

HPARAMS = "hparams"
"""The sub-folder (TensorBoard run) of the hyperparameters and final values."""


def require_tensorboard() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; a ConfigError naming the extra without it."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs the package)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise missing_extra("tensorboard", "tensorboard") from None
    return SummaryWriter


class TensorBoardTracker:
    """Writes a run's values as TensorBoard event files under ``folder``."""

    name = "tensorboard"

    def __init__(self, folder: Path) -> None:
        writer = require_tensorboard()
        self.folder = Path(folder)
        self._writer = writer(log_dir=str(self.folder))
        self._params: dict[str, Param] = {}

    def log_params(self, params: Mapping[str, Param]) -> None:
        self._params = dict(params)  # written with the final values (add_hparams)

    def log_epoch(self, epoch: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, epoch)
        self._writer.flush()  # live: TensorBoard shows the epoch now

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self._writer.add_image(tag, image, step, dataformats="HWC")
        self._writer.flush()

    def finish(
        self, summary: Mapping[str, float], files: Sequence[Path], *, failed: bool = False
    ) -> None:
        if not failed:
            self._writer.add_hparams(self._params, dict(summary), run_name=HPARAMS)
        self._writer.close()
