"""Unit tests: threshold selection at a target FPR, per-entity metrics, the rules baseline,
reason codes and the champion rule (no Spark)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_models_data import FEATURES, call_tables, sim_tables

from features.calls import call_feature_names
from features.settings import FeatureSettings
from features.sim import sim_feature_names
from models.baseline import SPOOF_CERTAIN_FEATURES, SpamRules, SpoofRules
from models.dataset import LABEL, SIM_CLASSES, label_call_rows, label_sim_rows
from models.errors import ModelError
from models.evaluate import (
    calibration,
    evaluate_units,
    flatten,
    recall_at_fpr_curve,
    threshold_at_fpr,
    unit_scores,
)
from models.reasons import sentence_templates
from models.registry import should_promote
from models.scoring import FLAGGED, FRAUD_TYPE, SCORE, ModelCard, ScoringModel
from models.settings import BoosterSettings, ModelSettings, SpamRuleSettings
from models.tasks import SPAM_SIM, SPOOF_CALL, boundaries_for, evaluate_model, fit_task, split_frame, task_spec


@pytest.mark.parametrize("n,target", [(1000, 0.001), (10_000, 0.001), (5000, 0.01), (37, 0.05), (100, 0.0)])
def test_threshold_keeps_fpr_at_or_below_target(n: int, target: float) -> None:
    rng = np.random.default_rng(n)
    negatives = rng.random(n)
    t = threshold_at_fpr(negatives, target)
    fpr = (negatives > t).mean()
    assert fpr <= target
    # and it is the lowest such threshold: one notch lower lets one more negative through
    allowed = math.floor(target * n + 1e-9)
    assert (negatives > t).sum() == allowed
    assert (negatives > np.nextafter(t, -np.inf)).sum() == allowed + 1


def test_threshold_with_ties_never_exceeds_target() -> None:
    negatives = np.array([0.0] * 990 + [0.7] * 10)
    t = threshold_at_fpr(negatives, 0.005)  # 5 allowed, but 10 tie at 0.7
    assert t == 0.7 and (negatives > t).sum() == 0


def test_no_negatives_give_no_threshold() -> None:
    """With no negative scores no threshold keeps any FPR: an error, not an arbitrary 0.5."""
    with pytest.raises(ValueError, match="no negative scores"):
        threshold_at_fpr(np.array([]), 0.001)


def _units(pos: list[float], neg: list[float], *, pos_class: str = "simbox") -> pd.DataFrame:
    n = len(pos) + len(neg)
    return pd.DataFrame(
        {
            SCORE: pos + neg,
            FRAUD_TYPE: ["simbox"] * n,
            "unit_class": [pos_class] * len(pos) + ["normal"] * len(neg),
            "population": ["simbox_evasive"] * len(pos) + ["ordinary"] * len(neg),
            "role": ["positive"] * len(pos) + ["negative"] * len(neg),
        },
        index=[f"u{i}" for i in range(n)],
    )


def test_metrics_on_hand_computed_scores() -> None:
    units = _units([0.9, 0.8, 0.3, 0.95], [0.1, 0.2, 0.85, 0.05, 0.0, 0.0, 0.0, 0.0])
    m = evaluate_units(units, threshold=0.5, target_fpr=0.125, classes=SIM_CLASSES, ks=(2, 4))
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 7)
    assert m["recall_at_fpr"] == 0.75 and m["fpr"] == 0.125 and m["precision"] == 0.75
    assert m["precision_at_k"] == {"2": 1.0, "4": 0.75}
    assert m["recall_by_type"]["simbox"] == 0.75 and math.isnan(m["recall_by_type"]["wangiri"])
    assert m["recall_by_population"] == {"simbox_evasive": 0.75}
    assert m["fpr_by_population"] == {"ordinary": 0.125}
    # the ROC curve at FPR 1/8 lets the 0.85 negative through, so a threshold just under 0.3
    # catches every positive; at FPR 0 only those above 0.85 are caught
    assert m["recall_at_fpr_curve"] == 1.0
    zero = evaluate_units(units, threshold=0.5, target_fpr=0.0, classes=SIM_CLASSES, ks=(2,))
    assert zero["recall_at_fpr_curve"] == 0.5
    assert m["roc_auc"] == pytest.approx(1 - 2 / 32)  # 0.85 outranks 0.8 and 0.3: 2 pairs of 32
    confusion = dict(zip(m["confusion"]["labels"], m["confusion"]["matrix"], strict=True))
    assert confusion["simbox"] == [1, 0, 3, 0] and confusion["normal"] == [7, 0, 1, 0]
    flat = flatten(m, "test.")
    assert flat["test.recall_by_population.simbox_evasive"] == 0.75 and "test.confusion.labels" not in flat


def test_entity_is_flagged_by_its_highest_window_and_inactive_fraud_is_excluded() -> None:
    split = pd.DataFrame(
        {
            "unit": ["a", "a", "b", "b", "c"],
            "unit_class": ["simbox", "simbox", "normal", "normal", "wangiri"],
            "population": ["simbox", "simbox", "ordinary", "ordinary", "wangiri"],
            "active": [False, True, True, True, False],
            "label": [0, 2, 0, 0, 0],
        }
    )
    scored = pd.DataFrame({SCORE: [0.9, 0.1, 0.2, 0.6, 0.99], FRAUD_TYPE: ["simbox"] * 5})
    units = unit_scores(split, scored, negative_class="normal")
    assert units.loc["a", SCORE] == 0.9 and units.loc["a", "role"] == "positive"
    assert units.loc["b", SCORE] == 0.6 and units.loc["b", "role"] == "negative"
    assert units.loc["c", "role"] == "excluded"  # fraud not yet active: could not be caught
    assert recall_at_fpr_curve(np.array([1, 0]), np.array([0.9, 0.6]), 0.0) == 1.0


def test_calibration_bins_and_brier() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.85, 0.95])
    cal = calibration(y, p, bins=10)
    assert cal["brier"] == pytest.approx(np.mean([0.05**2, 0.15**2, 0.15**2, 0.05**2]))
    assert [b["count"] for b in cal["bins"]] == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    assert cal["bins"][9]["observed_rate"] == 1.0


def _frame(**values: float) -> pd.DataFrame:
    row = {name: 0.0 for name in sim_feature_names(FEATURES)}
    row.update(values)
    return pd.DataFrame([row])


def test_spam_rules_fire_per_signature_and_scale_with_the_knob() -> None:
    rules = SpamRules(SpamRuleSettings(), FEATURES)
    robo = _frame(calls_out_peak_1h_24h=40, distinct_callee_ratio_24h=0.95, duration_mean_24h=8, calls_in_24h=3,
                  sms_out_24h=1, calls_out_24h=200)
    box = _frame(calls_in_24h=0, sms_out_24h=0, calls_out_24h=120, distinct_callee_ratio_24h=0.9,
                 duration_mean_24h=90)
    wangiri = _frame(cli_international_premium=1, cancelled_share_24h=0.97, calls_out_24h=60, calls_in_24h=1)
    evasive = _frame(calls_in_24h=4, sms_out_24h=3, calls_out_24h=120, duration_mean_24h=90)
    talky = _frame(calls_out_peak_1h_24h=40, distinct_callee_ratio_24h=0.95, duration_mean_24h=120, calls_in_24h=5)
    out = rules.score(pd.concat([robo, box, wangiri, evasive, talky], ignore_index=True))
    assert out[FLAGGED].tolist() == [True, True, True, False, False]
    assert out[FRAUD_TYPE].tolist()[:3] == ["spam_robocall", "simbox", "wangiri"]
    assert out[SCORE].tolist()[:3] == [2.0, 3.0, 6.0]
    stricter = rules.with_threshold(2.5).score(pd.concat([robo, box], ignore_index=True))
    assert stricter[FLAGGED].tolist() == [False, True]


def test_spoof_rules_follow_the_regulators_and_spare_roamers() -> None:
    calls, _ = call_tables(per_day=10, days=1)
    base = calls.iloc[[0] * 5].reset_index(drop=True).copy()
    cols = ["domestic_cli_on_international", "cli_owner_roaming", "cli_invalid_or_unallocated", "cli_do_not_originate"]
    base[cols] = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert SpoofRules(FEATURES).score(base)[FLAGGED].tolist() == [True, False, True, True, False]


def _spoof_split(settings: ModelSettings):
    calls, labels = call_tables(seed=4)
    rows = label_call_rows(calls, labels)
    sim_rows = label_sim_rows(*sim_tables(seed=4))
    return split_frame(rows, boundaries_for(sim_rows, settings))


def test_rules_that_hold_by_definition_flag_a_call_outright_in_every_scorer() -> None:
    """An unallocated or Do-Not-Originate CLI scores 1.0 whatever the booster says; the booster
    decides the rest. The card carries the rule, so a registry round trip (JSON) and the
    stream's worker model (built from the broadcast card) score the same."""
    from streaming.scoring import _worker_model

    settings = ModelSettings(spoof_call=BoosterSettings(num_boost_round=30))
    spec = task_spec(SPOOF_CALL, settings, FEATURES)
    split = _spoof_split(settings)
    model = fit_task(spec, split, settings=settings, features=FEATURES, seed=1)
    assert model.card.certain_features == SPOOF_CERTAIN_FEATURES
    # a legitimate-looking call that presents a DNO number, one with an unallocated number, and
    # the same call with a valid number
    legit = split.test[split.test[LABEL] == 0].head(1)
    rows = pd.concat([legit] * 3, ignore_index=True)
    rows.loc[0, "cli_do_not_originate"] = 1
    rows.loc[1, "cli_invalid_or_unallocated"] = 1
    scored = model.score(rows)
    alone = model.with_certain_features(()).score(rows)
    assert scored[SCORE].tolist()[:2] == [1.0, 1.0] and scored[FLAGGED].tolist()[:2] == [True, True]
    assert scored[SCORE].iloc[2] == alone[SCORE].iloc[2] < 1.0
    # the rule is the first reason given for the call it flagged
    reasons = model.reasons(rows.head(2), top_k=3, feature_settings=FEATURES)
    assert [r[0].feature for r in reasons] == ["cli_do_not_originate", "cli_invalid_or_unallocated"]
    assert reasons[0][0].text.startswith("presents a Do-Not-Originate number")
    # through the card's JSON: the registry's and the stream's model
    assert ModelCard.from_json(model.card.to_json()) == model.card

    class Broadcast:
        value = (model.booster.model_to_string(), model.card.to_json())

    streamed = _worker_model("spoof-test", 1, Broadcast()).score(rows)
    pd.testing.assert_frame_equal(streamed, scored)
    # a card logged before the field existed loads with no certain rules
    raw = json.loads(model.card.to_json())
    del raw["certain_features"]
    assert ModelCard.from_json(json.dumps(raw)).certain_features == ()
    # ... and without a cold threshold: every row is judged at its one threshold
    del raw["cold_threshold"]
    old = ModelCard.from_json(json.dumps(raw))
    assert old.cold_threshold is None and ScoringModel(model.booster, old).cold_threshold == old.threshold


def test_a_certain_rule_the_labels_contradict_is_left_to_the_model() -> None:
    """A legitimate training call presenting a "Do-Not-Originate" number (the list is out of
    date): that rule no longer flags outright; the unallocated one still does."""
    settings = ModelSettings(spoof_call=BoosterSettings(num_boost_round=30))
    spec = task_spec(SPOOF_CALL, settings, FEATURES)
    split = _spoof_split(settings)
    train = split.train.copy()
    train.loc[train.index[train[LABEL] == 0][0], "cli_do_not_originate"] = 1
    model = fit_task(spec, type(split)(train, split.validation, split.test), settings=settings, features=FEATURES,
                     seed=1)
    assert model.card.certain_features == ("cli_invalid_or_unallocated",)


def test_validation_rows_without_negatives_stop_training_with_one_line() -> None:
    """Cold validation rows holding no legitimate call cannot place the cold threshold: training
    stops with a one-line ModelError naming the rows, rather than guessing a threshold."""
    settings = ModelSettings(spoof_call=BoosterSettings(num_boost_round=10))
    spec = task_spec(SPOOF_CALL, settings, FEATURES)
    split = _spoof_split(settings)
    only_spoofed = split.validation[split.validation[LABEL] == 1]
    assert len(only_spoofed) > 0
    with pytest.raises(ModelError, match="the cold validation rows hold no legitimate calls") as raised:
        fit_task(spec, split, settings=settings, features=FEATURES, seed=1, cold_validation=only_spoofed)
    assert "\n" not in str(raised.value)


def test_the_spoof_model_is_never_worse_than_the_rules_on_the_kinds_they_define() -> None:
    """Every unallocated and Do-Not-Originate call the rules catch, the model flags too, at its
    validation threshold, and the evaluation report says which rules flagged outright."""
    settings = ModelSettings(spoof_call=BoosterSettings(num_boost_round=30), target_fpr_call=0.001)
    spec = task_spec(SPOOF_CALL, settings, FEATURES)
    split = _spoof_split(settings)
    model = fit_task(spec, split, settings=settings, features=FEATURES, seed=1)
    b = boundaries_for(label_sim_rows(*sim_tables(seed=4)), settings)
    report = evaluate_model(spec, model, split, settings=settings, features=FEATURES, boundaries=b).report
    assert report["certain_features"] == list(SPOOF_CERTAIN_FEATURES)
    for kind in ("unallocated", "do_not_originate"):
        assert report["baseline"]["test"]["recall_by_population"][kind] == 1.0
        assert report["test"]["recall_by_population"][kind] == 1.0


@pytest.mark.slow
def test_model_beats_rules_on_look_alike_data_and_baseline_is_tuned_on_validation() -> None:
    settings = ModelSettings(spam_sim=BoosterSettings(num_boost_round=60), target_fpr_sim=0.01)
    spec = task_spec(SPAM_SIM, settings, FEATURES)
    features, labels = sim_tables(seed=5)
    rows = label_sim_rows(features, labels)
    b = boundaries_for(rows, settings)
    split = split_frame(rows, b)
    model = fit_task(spec, split, settings=settings, features=FEATURES, seed=1)
    report = evaluate_model(spec, model, split, settings=settings, features=FEATURES, boundaries=b).report
    test, base = report["test"], report["baseline"]["test"]
    assert report["baseline"]["tuned"] and report["baseline"]["threshold"] != 1.0
    # evasive SIM boxes receive calls and send SMS: the rule cannot see them (it only catches a
    # few by their ordinary-looking windows before the box started: 1 of the 3 here), the model can
    assert base["recall_by_population"]["simbox_evasive"] < 0.5
    assert test["recall_by_population"]["simbox_evasive"] >= 0.9
    assert report["comparison"]["recall_gain_at_fpr"] > 0.1
    # the threshold came from validation: on validation the FPR is within target
    assert report["validation"]["fpr"] <= settings.target_fpr_sim


@pytest.mark.parametrize(
    "settings",
    [FeatureSettings(), FeatureSettings(window_s=7200, short_window_s=900, cohort_bucket_s=900,
                                        concurrency_window_s=90)],
)
def test_every_feature_has_a_sentence_with_its_value(settings: FeatureSettings) -> None:
    templates = sentence_templates(settings)
    for name in [*sim_feature_names(settings), *call_feature_names(settings)]:
        assert name in templates, name
        for value in (0.0, 1.0, 0.37, 212.0, float("nan")):
            text = templates[name](value, {"cli_kind_code": 0.0, "cli_owner_roaming": 0.0})
            assert isinstance(text, str) and text and "{" not in text and "nan" not in text, (name, text)
    w = settings.window
    assert templates[f"distinct_callees_{w}"](212.0, {}) == f"called 212 distinct numbers in {w}"
    assert templates[f"short_call_share_{w}"](0.95, {}) == "95% of answered calls under 10 s"
    assert templates["domestic_cli_on_international"](1.0, {"cli_kind_code": 0.0, "cli_owner_roaming": 0.0}) == (
        "presents a domestic mobile number but arrived on an international gateway while the owner is not roaming"
    )


def test_reasons_explain_the_predicted_fraud_class() -> None:
    settings = ModelSettings(spam_sim=BoosterSettings(num_boost_round=40))
    spec = task_spec(SPAM_SIM, settings, FEATURES)
    features, labels = sim_tables(seed=2)
    rows = label_sim_rows(features, labels)
    split = split_frame(rows, boundaries_for(rows, settings))
    model = fit_task(spec, split, settings=settings, features=FEATURES, seed=1)
    boxes = split.test[(split.test["population"] == "simbox") & (split.test["label"] == 2)].head(5)
    reasons = model.reasons(boxes, top_k=3, feature_settings=FEATURES)
    assert len(reasons) == len(boxes) and all(1 <= len(r) <= 3 for r in reasons)
    assert all(r[0].contribution >= r[-1].contribution > 0 for r in reasons)
    # SIM boxes are told apart by having no incoming calls and no SMS
    top = {r.feature for rs in reasons for r in rs}
    assert top & {"calls_in_24h", "sms_out_24h", "in_out_ratio_24h", "callback_share_24h"}


def test_champion_moves_only_on_strict_improvement() -> None:
    assert should_promote((0.9, 0.8), None)
    assert should_promote((0.91, 0.1), (0.9, 0.99))
    assert should_promote((0.9, 0.81), (0.9, 0.8))
    assert not should_promote((0.9, 0.8), (0.9, 0.8))
    assert not should_promote((0.89, 0.99), (0.9, 0.1))
