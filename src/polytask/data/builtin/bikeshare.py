"""Capital Bikeshare, Washington DC, hourly 2011 (ISLP 0.6.0's ``Bikeshare.csv``), as
multi-horizon forecasting.

The shipped file is ISLP's CSV as is (8,645 hours; a few hours of the year are absent). For each
hour *t* :func:`make_windows` builds

* a window of the past 24 hourly rider counts, ``bikers_lag_23`` (oldest) … ``bikers_lag_0``
  (hour *t* itself), in that column order so a sequence encoder reads them oldest first;
* static features of hour *t*: hour of day, weekday, working day, holiday, season, month,
  weather situation, temperature, felt temperature, humidity, wind speed;
* targets: total riders at *t*+1, *t*+3 and *t*+6 hours (one task per horizon), and Caruana's
  "future as output" auxiliary target: the casual riders at *t*+1 (a quantity from the future,
  so it can be a training signal but never an input);
* a chronological ``split``: days 1–273 (Jan–Sep) train, 274–319 validation, 320–365 test.

Windows and targets are built on the full hourly timeline, so a missing hour makes the rows
that would need it drop out instead of silently joining non-adjacent hours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LAGS = 24
HORIZONS = (1, 3, 6)
STATIC = [
    "hr",
    "weekday",
    "workingday",
    "holiday",
    "season",
    "mnth",
    "weathersit",
    "temp",
    "atemp",
    "hum",
    "windspeed",
]
SEQUENCE = [f"bikers_lag_{k}" for k in range(LAGS - 1, -1, -1)]


def make_windows(raw: pd.DataFrame, lags: int = LAGS, horizons=HORIZONS) -> pd.DataFrame:
    """Lag windows, static features, horizon targets and split (see module docs)."""
    frame = raw.copy()
    frame["hr"] = pd.to_numeric(frame["hr"]).astype(int)
    frame["t"] = (frame["day"].astype(int) - 1) * 24 + frame["hr"]
    timeline = frame.set_index("t").reindex(np.arange(frame["t"].min(), frame["t"].max() + 1))
    bikers = timeline["bikers"].astype(float)
    out = pd.DataFrame(index=timeline.index)
    for k in range(lags - 1, -1, -1):
        out[f"bikers_lag_{k}"] = bikers.shift(k)
    for column in STATIC:
        out[column] = timeline[column]
    for h in horizons:
        out[f"bikers_next_{h}h"] = bikers.shift(-h)
    out["casual_next_1h"] = timeline["casual"].astype(float).shift(-1)
    out = out[timeline["bikers"].notna()].dropna()
    day = out.index.to_numpy() // 24 + 1
    out["split"] = np.select([day <= 273, day <= 319], ["train", "validation"], "test")
    for column in ("hr", "weekday", "workingday", "holiday", "season"):
        out[column] = out[column].astype(int).astype(str)  # categories, not magnitudes
    return out.reset_index(drop=True)


TASKS = [
    *(
        {"name": f"riders_{h}h", "type": "regression", "target": f"bikers_next_{h}h"}
        for h in HORIZONS
    ),
    {
        "name": "aux_casual_1h",
        "type": "regression",
        "target": "casual_next_1h",
        "weight": 0.5,
        "auxiliary": True,
    },
]
MODEL = {"encoder": {"type": "gru", "sequence": ["bikers_lag_"], "hidden": 32}}
