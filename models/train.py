"""LightGBM training with the native API (``lgb.train`` -> ``Booster``).

Reproducible by construction: a fixed seed (LightGBM derives its bagging, feature-fraction and
data seeds from it), ``deterministic=True``, a fixed thread count and ``force_col_wise`` (the
row-wise/column-wise choice is otherwise timed at run time and can differ between runs).
Imbalance is handled with "balanced" class weights capped at ``max_class_weight_ratio``;
validation rows carry the same weights so early stopping watches the loss the model optimises.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.dataset import LABEL
from models.errors import ModelError
from models.matrix import feature_matrix
from models.scoring import ModelCard, ScoringModel
from models.settings import BoosterSettings


def booster_params(
    n_classes: int, settings: BoosterSettings, *, seed: int, num_threads: int
) -> dict[str, Any]:
    """Parameters for ``lgb.train``; everything that affects the result is pinned."""
    params: dict[str, Any] = {
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "feature_fraction": settings.feature_fraction,
        "bagging_fraction": settings.bagging_fraction,
        "bagging_freq": settings.bagging_freq,
        "lambda_l2": settings.lambda_l2,
        "max_bin": settings.max_bin,
        "seed": seed,
        "deterministic": True,
        "num_threads": num_threads,
        "force_col_wise": True,
        "verbosity": -1,
    }
    if n_classes == 2:
        params.update(objective="binary", metric="binary_logloss")
    else:
        params.update(objective="multiclass", num_class=n_classes, metric="multi_logloss")
    return params


def class_weights(labels: np.ndarray, n_classes: int, *, max_ratio: float) -> np.ndarray:
    """Per-class weights ``n / (k * n_c)``, none above ``max_ratio`` x the majority's weight.

    >>> class_weights(np.array([0, 0, 0, 1]), 2, max_ratio=50.0).round(3).tolist()
    [0.667, 2.0]
    """
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    floor = weights[present].min()
    return np.minimum(weights, floor * max_ratio)


def negative_sample(
    labels: np.ndarray, class_weight: np.ndarray, rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows to keep (every row not of class 0, a ``rate`` share of class 0 drawn with ``rng``) and
    their weights (class 0 weighted up by ``1 / rate``, so the loss is unbiased).

    >>> keep, w = negative_sample(np.array([0, 0, 0, 0, 1]), np.array([1.0, 4.0]), 1.0,
    ...                           np.random.default_rng(0))
    >>> keep.tolist(), w.tolist()
    ([True, True, True, True, True], [1.0, 1.0, 1.0, 1.0, 4.0])
    """
    draw = rng.random(len(labels))
    keep = (labels != 0) | (draw < rate)
    weights = class_weight[labels[keep]] * np.where(labels[keep] == 0, 1.0 / rate, 1.0)
    return keep, weights


def train_booster(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    task: str,
    classes: tuple[str, ...],
    feature_names: tuple[str, ...],
    settings: BoosterSettings,
    seed: int,
    num_threads: int,
    target_fpr: float,
    feature_settings: dict[str, Any],
) -> ScoringModel:
    """Train one model; the returned model's threshold is NaN until chosen on validation."""
    k = len(classes)
    y_train = train[LABEL].to_numpy(dtype=np.int32)
    y_val = validation[LABEL].to_numpy(dtype=np.int32)
    if len(np.unique(y_train)) < 2:
        raise ModelError(f"{task}: the training split has a single class; simulate more days or SIMs")
    weights = class_weights(y_train, k, max_ratio=settings.max_class_weight_ratio)
    names = list(feature_names)
    rng = np.random.default_rng(seed)
    keep_train, w_train = negative_sample(y_train, weights, settings.negative_sample_rate, rng)
    keep_val, w_val = negative_sample(y_val, weights, settings.negative_sample_rate, rng)
    train_set = lgb.Dataset(
        feature_matrix(train, feature_names)[keep_train], label=y_train[keep_train], weight=w_train,
        feature_name=names, free_raw_data=True,
    )
    val_set = lgb.Dataset(
        feature_matrix(validation, feature_names)[keep_val], label=y_val[keep_val], weight=w_val,
        feature_name=names, reference=train_set, free_raw_data=True,
    )
    params = booster_params(k, settings, seed=seed, num_threads=num_threads)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=settings.num_boost_round,
        valid_sets=[val_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    # keep exactly the trees that are served: the registry stores the best iteration only, and the
    # in-memory model must predict what the stored one predicts
    served = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    card = ModelCard(
        task=task,
        classes=classes,
        feature_names=feature_names,
        threshold=float("nan"),
        target_fpr=target_fpr,
        best_iteration=int(best),
        feature_settings=feature_settings,
    )
    return ScoringModel(served, card)
