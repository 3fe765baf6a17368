"""The benchmark scripts import their shared helper by its bare name (``import _report``), as
``python benchmarks/<script>.py`` allows; the tests load them with that folder on the path."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
