"""The model input built from a feature frame, shared by training, scoring and reason codes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.errors import ModelError


def feature_matrix(frame: pd.DataFrame, feature_names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The model input as float64 (missing values as NaN, which LightGBM routes natively)."""
    missing = [f for f in feature_names if f not in frame.columns]
    if missing:
        raise ModelError(f"input lacks feature column(s) {missing}: rebuild features with the model's settings")
    return frame[list(feature_names)].to_numpy(dtype=np.float64, na_value=np.nan)
