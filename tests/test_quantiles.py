"""Feature quantiles kept with a model version, and the percentiles the stream stores with a
decision's reasons (unit tier: no Spark, no MLflow)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.quantiles import LEVELS, FeatureQuantiles


def population() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "calls_out_24h": rng.poisson(8, 5000).astype(float),
            # most subscribers receive nothing in a window: ties at zero
            "calls_in_24h": np.where(rng.random(5000) < 0.6, 0.0, rng.poisson(3, 5000)),
            "gap_cv_24h": np.where(rng.random(5000) < 0.1, np.nan, rng.random(5000)),
            "never_known": np.nan,
        }
    )


def test_percentiles_match_the_population_they_came_from() -> None:
    frame = population()
    q = FeatureQuantiles.from_frame(frame, frame.columns)
    assert q.rows == 5000 and all(len(v) == LEVELS for k, v in q.values.items() if k != "never_known")
    for name in ("calls_out_24h", "gap_cv_24h"):
        col = frame[name].dropna()
        for value in (col.quantile(0.05), col.median(), col.quantile(0.97)):
            exact = 100 * (col <= value).mean()
            assert q.percentile(name, value) == pytest.approx(exact, abs=2.5), (name, value)
    # a robocaller's 212 calls are beyond everything seen; nothing is below the minimum
    assert q.percentile("calls_out_24h", 212) == 100.0
    assert q.percentile("calls_out_24h", -1) == 0.0
    # ties: receiving nothing is at or above 60% of windows, not at the bottom
    assert q.percentile("calls_in_24h", 0) == pytest.approx(60, abs=2)


def test_unknown_values_have_no_percentile() -> None:
    q = FeatureQuantiles.from_frame(population(), ["calls_out_24h", "never_known"])
    assert q.values["never_known"] == ()
    assert q.percentile("never_known", 1.0) is None
    assert q.percentile("calls_out_24h", None) is None
    assert q.percentile("calls_out_24h", float("nan")) is None
    assert q.percentile("not_a_feature", 3.0) is None


def test_quantiles_survive_json_and_stay_small() -> None:
    frame = population()
    q = FeatureQuantiles.from_frame(frame, frame.columns)
    text = q.to_json()
    assert FeatureQuantiles.from_json(text) == q
    assert json.loads(text)["levels"] == LEVELS
    # kept in the MLmodel file of every version: a few kB per feature at most
    assert len(text) < 3000 * len(frame.columns)


def test_a_trained_version_places_its_reasons_in_the_validation_population() -> None:
    from test_models_data import FEATURES, sim_tables

    from models.settings import BoosterSettings, ModelSettings
    from models.tasks import SPAM_SIM, boundaries_for, fit_task, split_frame, task_spec
    from streaming.evidence import with_reasons

    settings = ModelSettings(spam_sim=BoosterSettings(num_boost_round=20, early_stopping_rounds=5))
    spec = task_spec(SPAM_SIM, settings, FEATURES)
    features, labels = sim_tables(seed=2)
    rows = spec.label(features, labels)
    split = split_frame(rows, boundaries_for(rows, settings))
    model = fit_task(spec, split, settings=settings, features=FEATURES, seed=1)
    assert model.quantiles is not None and model.quantiles.rows == len(split.validation)

    flagged = split.test[model.score(split.test)["flagged"].to_numpy()].head(20)
    assert len(flagged) > 0
    for (_, row), reasons in zip(
        flagged.iterrows(), model.reasons(flagged, top_k=3, feature_settings=FEATURES), strict=True
    ):
        evidence = with_reasons({"kind": "sim", "features": {}}, reasons, model.quantiles)
        assert evidence["kind"] == "sim" and [r["text"] for r in evidence["reasons"]] == [r.text for r in reasons]
        for r in evidence["reasons"]:
            population = split.validation[r["feature"]].dropna()
            exact = 100 * (population <= row[r["feature"]]).mean()
            assert r["value"] == pytest.approx(row[r["feature"]])
            assert r["percentile"] == pytest.approx(exact, abs=3), r
    # without quantiles (a version registered before they were kept) the reasons stand alone
    bare = with_reasons(None, reasons, None)
    assert [r["percentile"] for r in bare["reasons"]] == [None] * len(reasons)
