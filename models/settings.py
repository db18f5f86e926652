"""Model settings: LightGBM parameters, the time split, evaluation targets, registry names.

``pipeline.config.Settings`` composes this into the whole config (section ``models:``), so
``models/`` never imports ``pipeline/``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BoosterSettings(_Section):
    """Native LightGBM parameters for one model (``lgb.train``)."""

    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(20, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    max_bin: int = Field(255, ge=2)
    num_boost_round: int = Field(400, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    #: class weights are "balanced" (n / (k * n_class)) but no class gets more than this times
    #: the weight of the majority class: a few hundred fraud SIMs would otherwise dominate
    max_class_weight_ratio: float = Field(50.0, ge=1)
    #: share of the first class's rows (normal SIM windows, legitimate calls) kept for fitting
    #: and early stopping, the kept ones weighted up by its inverse; fraud rows are all kept.
    #: A SIM's partial windows repeat much of its full one, so 1 in 4 normal rows loses little
    #: and quarters the fit. Thresholds are still chosen on every validation row.
    negative_sample_rate: float = Field(1.0, gt=0, le=1)


class SplitSettings(_Section):
    """Split by time: the last ``test_days`` are the test set, the ``validation_days`` before
    them validate (early stopping, thresholds, champion comparison), the rest trains."""

    validation_days: int = Field(1, ge=1)
    test_days: int = Field(1, ge=1)


class SpamRuleSettings(_Section):
    """Today's operator rules for spam SIMs (DOMAIN.md signatures), the baseline to beat.

    The fixed conditions are the operators' usual values; the volume thresholds are multiplied
    by one knob that is tuned on validation to the target FPR (``models.baseline``).
    """

    #: robocaller: busy hour above ``peak_1h`` calls, mostly new callees, short calls
    spam_peak_1h: float = Field(20.0, gt=0)
    spam_distinct_callee_ratio: float = Field(0.8, ge=0, le=1)
    spam_duration_mean_s: float = Field(30.0, gt=0)
    #: SIM box: no incoming calls, no SMS, more than this many outgoing calls
    simbox_calls_out: float = Field(40.0, gt=0)
    #: Wangiri: an international premium-rate CLI whose calls are mostly cancelled one-ring calls
    wangiri_cancelled_share: float = Field(0.8, ge=0, le=1)
    wangiri_calls_out: float = Field(10.0, gt=0)


class ModelSettings(_Section):
    seed: int = 42
    #: fixed so that training is reproducible (LightGBM results depend on the thread count)
    num_threads: int = Field(2, ge=1)
    split: SplitSettings = SplitSettings()
    spam_sim: BoosterSettings = BoosterSettings(negative_sample_rate=0.25)
    spoof_call: BoosterSettings = BoosterSettings(num_leaves=15, min_data_in_leaf=50)
    #: operating points: thresholds are chosen on validation for these false-positive rates
    target_fpr_sim: float = Field(0.001, gt=0, lt=1)
    target_fpr_call: float = Field(0.001, gt=0, lt=1)
    precision_at_k: tuple[int, ...] = (100, 1000)
    calibration_bins: int = Field(10, ge=2)
    #: reason codes per flagged SIM or call
    reasons_top_k: int = Field(3, ge=1)
    baseline: SpamRuleSettings = SpamRuleSettings()
    spam_sim_name: str = "simguard-spam-sim"
    spoof_call_name: str = "simguard-spoof-call"
    champion_alias: str = "champion"
