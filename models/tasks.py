"""The two detection tasks end to end on pandas: label, split, train, threshold, evaluate.

``spam-sim``: multiclass (normal, spam_robocall, simbox, wangiri) on per-SIM window rows.
``spoof-call``: binary (legitimate, spoofed) on trunk-call rows.

:func:`fit_task` trains a new version; :func:`evaluate_model` evaluates any version (new, the
champion, an older one) on a split, beside the rules baseline tuned on the same validation data.
Pure pandas and LightGBM: the Spark feature job and the registry are composed in ``pipeline/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features.calls import call_feature_names
from features.settings import FeatureSettings
from features.sim import sim_feature_names
from models.baseline import SPOOF_CERTAIN_FEATURES, SpamRules, SpoofRules
from models.dataset import (
    ALLOWLISTED,
    CALL_CLASSES,
    LABEL,
    SIM_CLASSES,
    UNIT,
    label_call_rows,
    label_sim_rows,
)
from models.errors import ModelError
from models.evaluate import (
    evaluate_units,
    recall_at_fpr_curve,
    row_calibration,
    threshold_at_fpr,
    unit_scores,
)
from models.scoring import SCORE, ScoringModel
from models.settings import BoosterSettings, ModelSettings
from models.split import Boundaries, Split, day_boundaries, scored_at, time_split
from models.train import train_booster

SPAM_SIM = "spam-sim"
SPOOF_CALL = "spoof-call"
TASKS: tuple[str, ...] = (SPAM_SIM, SPOOF_CALL)


class Scorer(Protocol):
    threshold: float

    def score(self, frame: pd.DataFrame) -> pd.DataFrame: ...

    def with_threshold(self, threshold: float) -> Scorer: ...


@dataclass(frozen=True)
class TaskSpec:
    task: str
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    target_fpr: float
    booster: BoosterSettings
    registered_name: str
    #: rules that hold by definition (0/1 features): a row with one set scores 1.0
    #: (``models.scoring``), if no negative row of training or validation has it set
    certain_features: tuple[str, ...] = ()

    def label(self, features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
        if self.task == SPAM_SIM:
            return label_sim_rows(features, labels)
        return label_call_rows(features, labels)

    def baseline(self, settings: ModelSettings, features: FeatureSettings) -> Scorer:
        if self.task == SPAM_SIM:
            return SpamRules(settings.baseline, features)
        return SpoofRules(features)


def task_spec(task: str, settings: ModelSettings, features: FeatureSettings) -> TaskSpec:
    if task == SPAM_SIM:
        return TaskSpec(
            task=SPAM_SIM,
            classes=SIM_CLASSES,
            feature_names=tuple(sim_feature_names(features)),
            target_fpr=settings.target_fpr_sim,
            booster=settings.spam_sim,
            registered_name=settings.spam_sim_name,
        )
    if task == SPOOF_CALL:
        return TaskSpec(
            task=SPOOF_CALL,
            classes=CALL_CLASSES,
            feature_names=tuple(call_feature_names(features)),
            target_fpr=settings.target_fpr_call,
            booster=settings.spoof_call,
            registered_name=settings.spoof_call_name,
            certain_features=SPOOF_CERTAIN_FEATURES,
        )
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def split_frame(frame: pd.DataFrame, boundaries: Boundaries) -> Split:
    return time_split(frame, boundaries)


def boundaries_for(sim_rows: pd.DataFrame, settings: ModelSettings) -> Boundaries:
    """One set of day boundaries for both tasks, from the last day with SIM activity."""
    return day_boundaries(
        scored_at(sim_rows).max(),
        validation_days=settings.split.validation_days,
        test_days=settings.split.test_days,
    )


def _units(
    spec: TaskSpec, split: pd.DataFrame, scorer: Scorer, *, allowlist: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Row scores and per-unit scores. Rows marked ``allowlisted`` score 0: the policy never
    acts on them, so they count as not flagged, exactly as in the streaming job."""
    scored = scorer.score(split)
    if allowlist and ALLOWLISTED in split.columns:
        scored = scored.copy()
        scored[SCORE] = np.where(split[ALLOWLISTED].to_numpy(dtype=bool), 0.0, scored[SCORE].to_numpy())
    return scored, unit_scores(split, scored, negative_class=spec.classes[0])


def tune_threshold(spec: TaskSpec, scorer: Scorer, validation: pd.DataFrame, *, rows: str = "validation") -> float:
    """The threshold for ``spec.target_fpr`` over validation's negative units (SIMs or calls);
    ``rows`` names them in the error raised when there are none."""
    _, units = _units(spec, validation, scorer)
    negatives = units.loc[units["role"] == "negative", SCORE].to_numpy()
    if negatives.size == 0:
        kind = "normal SIMs" if spec.task == SPAM_SIM else "legitimate calls"
        raise ModelError(f"{spec.registered_name}: the {rows} rows hold no {kind}, so no threshold can keep "
                         f"the false-positive rate at {spec.target_fpr:g}; train on more days or subscribers")
    return threshold_at_fpr(negatives, spec.target_fpr)


def validation_key(spec: TaskSpec, model: Scorer, validation: pd.DataFrame) -> tuple[float, float]:
    """What "better" means for the champion: recall at the FPR its threshold is chosen for on
    validation, then PR-AUC (both on the same validation rows for old and new versions)."""
    _, units = _units(spec, validation, model)
    kept = units[units["role"] != "excluded"]
    y = (kept["role"] == "positive").to_numpy(dtype=np.int32)
    s = kept[SCORE].to_numpy(dtype=np.float64)
    from sklearn.metrics import average_precision_score

    pr_auc = float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else 0.0
    recall = recall_at_fpr_curve(y, s, spec.target_fpr)
    return (0.0 if np.isnan(recall) else recall, pr_auc)


def certain_features(spec: TaskSpec, split: Split) -> tuple[str, ...]:
    """Those of ``spec.certain_features`` that no negative row (label 0) of training or
    validation has set: a rule the labelled data contradict (a range allocated since the
    numbering plan was loaded, say) is left to the model rather than trusted outright."""

    def contradicted(name: str) -> bool:
        return any(
            bool(((frame[LABEL] == 0) & (frame[name].fillna(0) >= 0.5)).any())
            for frame in (split.train, split.validation)
        )

    return tuple(name for name in spec.certain_features if not contradicted(name))


def fit_task(
    spec: TaskSpec,
    split: Split,
    *,
    settings: ModelSettings,
    features: FeatureSettings,
    seed: int,
    cold_validation: pd.DataFrame | None = None,
) -> ScoringModel:
    """Train a version on ``split.train`` (early stopping on validation) and set its threshold;
    with ``cold_validation`` (the validation days' rows computed from their records alone) also
    the threshold for rows whose window reaches before a stream's first record."""
    model = train_booster(
        split.train,
        split.validation,
        task=spec.task,
        classes=spec.classes,
        feature_names=spec.feature_names,
        settings=spec.booster,
        seed=seed,
        num_threads=settings.num_threads,
        target_fpr=spec.target_fpr,
        feature_settings=features.model_dump(),
    )
    model = model.with_certain_features(certain_features(spec, split))
    model = model.with_threshold(tune_threshold(spec, model, split.validation))
    if cold_validation is not None:
        model = model.with_cold_threshold(tune_threshold(spec, model, cold_validation, rows="cold validation"))
    # validation holds every point the stream scores on its days: the population a value is placed in
    return model.with_quantiles(split.validation)


@dataclass(frozen=True)
class Evaluation:
    report: dict[str, Any]
    #: per-unit test scores of the model and the baseline (for plots)
    model_units: pd.DataFrame
    baseline_units: pd.DataFrame
    #: per-row test scores of the model (for calibration plots)
    model_rows: pd.DataFrame


def evaluate_model(
    spec: TaskSpec,
    model: Scorer,
    split: Split,
    *,
    settings: ModelSettings,
    features: FeatureSettings,
    boundaries: Boundaries,
    cold_validation: pd.DataFrame | None = None,
) -> Evaluation:
    """The model at its stored threshold and the baseline tuned on this validation, on test;
    with ``cold_validation``, also those rows at the model's cold threshold (if its card has one)."""
    ks = settings.precision_at_k
    metrics = {}
    runs = [("validation", split.validation, model.threshold), ("test", split.test, model.threshold)]
    # a version trained before the cold threshold existed has none (its card says None)
    cold_threshold = getattr(getattr(model, "card", None), "cold_threshold", None)
    if cold_validation is not None and cold_threshold is not None:
        runs.append(("cold_validation", cold_validation, cold_threshold))
    for name, frame, threshold in runs:
        _, units = _units(spec, frame, model)
        metrics[name] = evaluate_units(
            units, threshold=threshold, target_fpr=spec.target_fpr, classes=spec.classes, ks=ks
        )
    test_rows, model_units = _units(spec, split.test, model)
    _, raw_units = _units(spec, split.test, model, allowlist=False)
    without_allowlist = evaluate_units(
        raw_units, threshold=model.threshold, target_fpr=spec.target_fpr, classes=spec.classes, ks=ks
    )
    allowlisted_units = 0
    if ALLOWLISTED in split.test.columns:
        allowlisted_units = int(split.test.loc[split.test[ALLOWLISTED].astype(bool), UNIT].nunique())

    baseline = spec.baseline(settings, features)
    if getattr(baseline, "tunable", False):
        baseline = baseline.with_threshold(tune_threshold(spec, baseline, split.validation))
    _, base_units = _units(spec, split.test, baseline)
    base_test = evaluate_units(
        base_units, threshold=baseline.threshold, target_fpr=spec.target_fpr, classes=spec.classes, ks=ks
    )

    kept = model_units[model_units["role"] != "excluded"]
    y = (kept["role"] == "positive").to_numpy(dtype=np.int32)
    s = kept[SCORE].to_numpy(dtype=np.float64)
    at_base_fpr = recall_at_fpr_curve(y, s, base_test["fpr"]) if not np.isnan(base_test["fpr"]) else float("nan")
    test = metrics["test"]
    report: dict[str, Any] = {
        "model": spec.task,
        "registered_name": spec.registered_name,
        "target_fpr": spec.target_fpr,
        # rules that flag a row outright in this version (models.scoring)
        "certain_features": list(getattr(getattr(model, "card", None), "certain_features", ())),
        "split": {
            **boundaries.as_dict(),
            "train_rows": len(split.train),
            "validation_rows": len(split.validation),
            "test_rows": len(split.test),
        },
        "validation": metrics["validation"],
        # the validation days computed from their own records alone, at the cold threshold
        **({"cold_validation": metrics["cold_validation"]} if "cold_validation" in metrics else {}),
        "test": test,
        # the same model and threshold with the policy's allowlist switched off: what the model
        # alone would flag among registered businesses and short codes
        "test_without_allowlist": {
            "allowlisted_units": allowlisted_units,
            "recall_at_fpr": without_allowlist["recall_at_fpr"],
            "fpr": without_allowlist["fpr"],
            "precision": without_allowlist["precision"],
            "fpr_by_population": without_allowlist["fpr_by_population"],
        },
        "calibration": row_calibration(split.test, test_rows, bins=settings.calibration_bins),
        "baseline": {"threshold": baseline.threshold, "tuned": bool(getattr(baseline, "tunable", False)),
                     "test": base_test},
        "comparison": {
            # both at their validation-chosen operating points
            "recall_gain_at_fpr": test["recall_at_fpr"] - base_test["recall_at_fpr"],
            # both read off the test ROC curve at exactly the target FPR
            "recall_gain_at_target_fpr_curve": test["recall_at_fpr_curve"] - base_test["recall_at_fpr_curve"],
            # the model at the FPR the baseline actually reached on test (fair for a knob-less rule)
            "model_recall_at_baseline_fpr": at_base_fpr,
            "recall_gain_at_baseline_fpr": at_base_fpr - base_test["recall_at_fpr"],
        },
    }
    return Evaluation(report=report, model_units=model_units, baseline_units=base_units, model_rows=test_rows)


def summary_line(report: dict[str, Any], *, version: int | str | None) -> dict[str, Any]:
    """The one-line JSON summary ``simguard evaluate --json`` prints per model."""
    test, base = report["test"], report["baseline"]["test"]
    return {
        "model": report["model"],
        "registered_name": report["registered_name"],
        "version": version,
        "target_fpr": report["target_fpr"],
        "threshold": test["threshold"],
        # rows whose window reaches before a stream's first record (spam SIMs): the threshold and
        # what it gave on the validation days computed from their own records alone
        "cold_threshold": (report.get("cold_validation") or {}).get("threshold"),
        "cold_validation_fpr": (report.get("cold_validation") or {}).get("fpr"),
        "recall_at_fpr": test["recall_at_fpr"],
        "fpr": test["fpr"],
        "precision": test["precision"],
        "pr_auc": test["pr_auc"],
        "roc_auc": test["roc_auc"],
        "recall_at_fpr_curve": test["recall_at_fpr_curve"],
        "precision_at_k": test["precision_at_k"],
        "recall_by_type": test["recall_by_type"],
        "recall_by_population": test["recall_by_population"],
        "fpr_by_population": test["fpr_by_population"],
        "n_positive": test["n_positive"],
        "n_negative": test["n_negative"],
        "brier": report["calibration"]["brier"],
        "allowlisted_units": report["test_without_allowlist"]["allowlisted_units"],
        "fpr_without_allowlist": report["test_without_allowlist"]["fpr"],
        "recall_without_allowlist": report["test_without_allowlist"]["recall_at_fpr"],
        "baseline_recall_at_fpr": base["recall_at_fpr"],
        "baseline_fpr": base["fpr"],
        "baseline_recall_at_fpr_curve": base["recall_at_fpr_curve"],
        "baseline_recall_by_type": base["recall_by_type"],
        **report["comparison"],
    }
