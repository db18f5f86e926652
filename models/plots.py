"""Evaluation plots logged with every version: PR and ROC curves (model beside the rules),
confusion matrix, feature importance and calibration. Matplotlib's Agg backend: no display."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from models.scoring import SCORE

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from models.scoring import ScoringModel


def _xy(units: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    kept = units[units["role"] != "excluded"]
    return (kept["role"] == "positive").to_numpy(dtype=np.int32), kept[SCORE].to_numpy(dtype=np.float64)


def _curves(
    model_units: pd.DataFrame, baseline_units: pd.DataFrame, *, title: str, target_fpr: float
) -> tuple[Figure, Figure]:
    pr, ax_pr = plt.subplots(figsize=(5, 4))
    roc, ax_roc = plt.subplots(figsize=(5, 4))
    for label, units in (("model", model_units), ("rules", baseline_units)):
        y, s = _xy(units)
        if 0 < y.sum() < len(y):
            p, r, _ = precision_recall_curve(y, s)
            ax_pr.plot(r, p, label=label)
            f, t, _ = roc_curve(y, s)
            ax_roc.plot(f, t, label=label)
    ax_pr.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall (test, per entity)")
    ax_roc.set(xlabel="false-positive rate", ylabel="recall", xscale="log", xlim=(1e-5, 1),
               title=f"{title}: ROC (test, per entity)")
    ax_roc.axvline(target_fpr, color="grey", linestyle="--", label=f"target FPR {target_fpr:g}")
    for ax in (ax_pr, ax_roc):
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    pr.tight_layout()
    roc.tight_layout()
    return pr, roc


def _confusion(confusion: dict[str, Any], *, title: str) -> Figure:
    labels, m = confusion["labels"], np.asarray(confusion["matrix"])
    fig, ax = plt.subplots(figsize=(1.3 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    ax.imshow(np.log1p(m), cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center")
    ax.set(xlabel="predicted (at the validation threshold)", ylabel="true", title=f"{title}: confusion (test)")
    fig.tight_layout()
    return fig


def _importance(model: ScoringModel, *, title: str) -> Figure:
    gain = np.asarray(model.booster.feature_importance(importance_type="gain"), dtype=np.float64)
    order = np.argsort(gain)
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(gain) + 1.2))
    ax.barh(np.asarray(model.feature_names)[order], gain[order])
    ax.set(xlabel="total gain", title=f"{title}: feature importance")
    fig.tight_layout()
    return fig


def _calibration(calibration: dict[str, Any], *, title: str) -> Figure:
    bins = [b for b in calibration["bins"] if b["count"]]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
    ax.plot([b["mean_predicted"] for b in bins], [b["observed_rate"] for b in bins], marker="o")
    ax.set(
        xlabel="mean predicted fraud probability",
        ylabel="observed fraud rate",
        title=f"{title}: calibration (Brier {calibration['brier']:.4f})",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def evaluation_figures(
    model: ScoringModel,
    report: dict[str, Any],
    *,
    model_units: pd.DataFrame,
    baseline_units: pd.DataFrame,
) -> dict[str, Figure]:
    """``{artifact file name: figure}``; the caller closes them after logging."""
    title = report["model"]
    pr, roc = _curves(model_units, baseline_units, title=title, target_fpr=report["target_fpr"])
    return {
        "pr_curve.png": pr,
        "roc_curve.png": roc,
        "confusion_matrix.png": _confusion(report["test"]["confusion"], title=title),
        "feature_importance.png": _importance(model, title=title),
        "calibration.png": _calibration(report["calibration"], title=title),
    }
