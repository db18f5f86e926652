"""Per-entity evaluation at a fixed false-positive rate.

A unit (a SIM, or a call) scores the maximum over its rows in the split: a SIM is flagged when
any of its windows scores above the threshold. Negatives are normal SIMs (look-alike
businesses and roamers included) or legitimate calls; positives are fraud SIMs with at least one
window overlapping their activity in the split, or spoofed calls.

Thresholds are chosen on the validation split for the target FPR
(:func:`threshold_at_fpr`) and applied unchanged to the test split, whose achieved FPR is
reported beside the target. ``recall_at_fpr`` is the recall at that operating point;
``recall_at_fpr_curve`` reads the split's own ROC curve at exactly the target FPR, a measure for
comparing scorers at equal FPR, never a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

from models.dataset import ACTIVE, LABEL, POPULATION, UNIT, UNIT_CLASS
from models.scoring import FRAUD_TYPE, SCORE


def threshold_at_fpr(negative_scores: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold at which at most ``target_fpr`` of negatives score strictly above it.

    >>> threshold_at_fpr(np.array([0.1, 0.2, 0.3, 0.9]), 0.25)  # one of four may pass
    0.3
    >>> threshold_at_fpr(np.array([0.1, 0.2, 0.3, 0.9]), 0.01)  # none may pass
    0.9
    """
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64))[::-1]
    if neg.size == 0:
        raise ValueError("no negative scores: a threshold for a false-positive rate needs some")
    allowed = math.floor(target_fpr * neg.size + 1e-9)
    if allowed >= neg.size:
        return float(np.nextafter(neg[-1], -np.inf))
    return float(neg[allowed])


def unit_scores(split: pd.DataFrame, scored: pd.DataFrame, *, negative_class: str) -> pd.DataFrame:
    """One row per unit: its max score, the fraud type at that row, class, population, role.

    ``role`` is ``positive`` (fraud active in the split), ``negative`` (``negative_class``) or
    ``excluded`` (fraud not yet active in the split: it could not have been caught there).
    """
    rows = pd.DataFrame(
        {
            UNIT: split[UNIT].to_numpy(),
            SCORE: scored[SCORE].to_numpy(),
            FRAUD_TYPE: scored[FRAUD_TYPE].to_numpy(),
            UNIT_CLASS: split[UNIT_CLASS].to_numpy(),
            POPULATION: split[POPULATION].to_numpy(),
            ACTIVE: split[ACTIVE].to_numpy(),
        }
    )
    # the highest-scoring row of each unit; ties broken by row order, which is fixed upstream
    top = rows.sort_values([UNIT, SCORE], ascending=[True, False], kind="stable").drop_duplicates(UNIT)
    top = top.set_index(UNIT).sort_index()
    active = rows.groupby(UNIT, sort=True)[ACTIVE].any().reindex(top.index).to_numpy()
    is_negative = (top[UNIT_CLASS] == negative_class).to_numpy()
    role = np.where(is_negative, "negative", np.where(active, "positive", "excluded"))
    return pd.DataFrame(
        {
            SCORE: top[SCORE],
            FRAUD_TYPE: top[FRAUD_TYPE],
            UNIT_CLASS: top[UNIT_CLASS],
            POPULATION: top[POPULATION],
            "role": role,
        }
    )


def recall_at_fpr_curve(y: np.ndarray, s: np.ndarray, target_fpr: float) -> float:
    """Best recall with FPR <= ``target_fpr`` read off the ROC curve of ``(y, s)``."""
    if y.sum() == 0 or (y == 0).sum() == 0:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    ok = fpr <= target_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def calibration(y: np.ndarray, p: np.ndarray, *, bins: int) -> dict[str, Any]:
    """Reliability bins (mean predicted vs observed fraud rate) and the Brier score, per row:
    scikit-learn's ``calibration_curve`` (uniform bins) and ``brier_score_loss``, with each
    bin's row count beside them (empty bins stay in the table, as ``None``)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    edges = np.linspace(0.0, 1.0, bins + 1)
    # the bin calibration_curve puts each score in, for the counts it does not return
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    observed, predicted = calibration_curve(y, p, n_bins=bins) if len(y) else (np.empty(0), np.empty(0))
    filled = iter(zip(observed.tolist(), predicted.tolist(), strict=True))
    table = []
    for b in range(bins):
        rate, mean = next(filled) if counts[b] else (None, None)
        table.append(
            {
                "bin": b,
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": int(counts[b]),
                "mean_predicted": mean,
                "observed_rate": rate,
            }
        )
    return {"brier": float(brier_score_loss(y, p)) if len(y) else float("nan"), "bins": table}


def evaluate_units(
    units: pd.DataFrame,
    *,
    threshold: float,
    target_fpr: float,
    classes: Sequence[str],
    ks: Sequence[int],
) -> dict[str, Any]:
    """Metrics over per-unit scores (output of :func:`unit_scores`) at ``threshold``."""
    scored = units[units["role"] != "excluded"]
    y = (scored["role"] == "positive").to_numpy(dtype=np.int32)
    s = scored[SCORE].to_numpy(dtype=np.float64)
    flagged = s > threshold
    tp, fp = int((flagged & (y == 1)).sum()), int((flagged & (y == 0)).sum())
    fn, tn = int((~flagged & (y == 1)).sum()), int((~flagged & (y == 0)).sum())
    both = 0 < y.sum() < len(y)
    out: dict[str, Any] = {
        "n_positive": int(y.sum()),
        "n_negative": int((y == 0).sum()),
        "n_excluded": int((units["role"] == "excluded").sum()),
        "threshold": float(threshold),
        "target_fpr": float(target_fpr),
        "recall_at_fpr": tp / (tp + fn) if tp + fn else float("nan"),
        "fpr": fp / (fp + tn) if fp + tn else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "recall_at_fpr_curve": recall_at_fpr_curve(y, s, target_fpr),
    }
    order = np.argsort(-s, kind="stable")
    out["precision_at_k"] = {str(k): float(y[order[:k]].mean()) if len(y) else float("nan") for k in ks}
    positive = scored["role"] == "positive"
    out["recall_by_type"] = {
        c: _share(flagged[(positive & (scored[UNIT_CLASS] == c)).to_numpy()]) for c in classes[1:]
    }
    out["recall_by_population"] = {
        str(p): _share(flagged[(positive & (scored[POPULATION] == p)).to_numpy()])
        for p in sorted(scored.loc[positive, POPULATION].unique())
    }
    negative = ~positive
    out["fpr_by_population"] = {
        str(p): _share(flagged[(negative & (scored[POPULATION] == p)).to_numpy()])
        for p in sorted(scored.loc[negative, POPULATION].unique())
    }
    predicted = np.where(flagged, scored[FRAUD_TYPE].to_numpy(dtype=object), classes[0])
    out["confusion"] = confusion(scored[UNIT_CLASS].to_numpy(dtype=object), predicted, classes)
    return out


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def confusion(true: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Counts: rows are the true class, columns the predicted (the negative class if not flagged)."""
    matrix = confusion_matrix(true, predicted, labels=list(classes)) if len(true) else np.zeros((len(classes),) * 2)
    return {"labels": list(classes), "matrix": matrix.astype(int).tolist()}


def row_calibration(split: pd.DataFrame, scored: pd.DataFrame, *, bins: int) -> dict[str, Any]:
    """Calibration of the per-row fraud probability against the row's own label."""
    y = (split[LABEL].to_numpy() > 0).astype(np.float64)
    return calibration(y, scored[SCORE].to_numpy(dtype=np.float64), bins=bins)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves as ``a.b.c`` keys (for MLflow); lists and NaN-only values are skipped."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, (int, float, np.integer, np.floating)) and not math.isnan(float(value)):
            flat[name] = float(value)
    return flat
