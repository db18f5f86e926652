"""Contract checks that every model satisfies (cf. River's ``checks/common.py``).

- deterministic under a seed: training twice gives the same predictions;
- survives MLflow: a version logged, registered and loaded back predicts exactly the same;
- never mutates its input DataFrame (training, scoring, reasons);
- the rules baselines score deterministically without mutating their input either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_models_data import FEATURES, call_tables, sim_tables

from models.registry import load_champion, load_version, log_version, mlflow_store
from models.scoring import FLAGGED, FRAUD_TYPE, SCORE, ScoringModel
from models.settings import BoosterSettings, ModelSettings
from models.split import Split
from models.tasks import SPAM_SIM, SPOOF_CALL, TASKS, TaskSpec, boundaries_for, fit_task, split_frame, task_spec

# every contract trains the models several times
pytestmark = pytest.mark.slow

#: few rounds: the contract holds for any model, and the suite must stay fast
SETTINGS = ModelSettings(
    spam_sim=BoosterSettings(num_boost_round=40, early_stopping_rounds=10),
    spoof_call=BoosterSettings(num_boost_round=40, early_stopping_rounds=10),
)


def _data(task: str) -> tuple[TaskSpec, Split]:
    spec = task_spec(task, SETTINGS, FEATURES)
    sim, sim_labels = sim_tables(seed=3)
    sim_rows = spec.label(sim, sim_labels) if task == SPAM_SIM else None
    if task == SPOOF_CALL:
        calls, call_labels = call_tables(seed=3)
        rows = spec.label(calls, call_labels)
        sim_rows = task_spec(SPAM_SIM, SETTINGS, FEATURES).label(sim, sim_labels)
    else:
        rows = sim_rows
    return spec, split_frame(rows, boundaries_for(sim_rows, SETTINGS))


@pytest.fixture(scope="module", params=TASKS)
def trained(request: pytest.FixtureRequest) -> tuple[TaskSpec, Split, ScoringModel]:
    spec, split = _data(request.param)
    return spec, split, fit_task(spec, split, settings=SETTINGS, features=FEATURES, seed=11)


def test_deterministic_under_a_seed(trained: tuple[TaskSpec, Split, ScoringModel]) -> None:
    spec, split, model = trained
    again = fit_task(spec, split, settings=SETTINGS, features=FEATURES, seed=11)
    np.testing.assert_array_equal(model.proba(split.test), again.proba(split.test))
    assert model.threshold == again.threshold
    assert model.booster.model_to_string() == again.booster.model_to_string()
    other = fit_task(spec, split, settings=SETTINGS, features=FEATURES, seed=12)
    # the seed matters (bagging and feature fraction), so the check above could have failed
    assert not np.array_equal(model.proba(split.test), other.proba(split.test))


def test_does_not_mutate_its_input(trained: tuple[TaskSpec, Split, ScoringModel]) -> None:
    spec, split, model = trained
    train, validation, test = split.train.copy(), split.validation.copy(), split.test.copy()
    fit_task(spec, split, settings=SETTINGS, features=FEATURES, seed=11)
    model.score(split.test)
    model.reasons(split.test.head(20), top_k=3, feature_settings=FEATURES)
    pd.testing.assert_frame_equal(split.train, train)
    pd.testing.assert_frame_equal(split.validation, validation)
    pd.testing.assert_frame_equal(split.test, test)


def test_same_predictions_after_mlflow_save_and_load(
    trained: tuple[TaskSpec, Split, ScoringModel], tmp_path: Path
) -> None:
    spec, split, model = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged = log_version(
        model,
        registered_name=spec.registered_name,
        tracking_uri=uri,
        registry_uri=None,
        experiment="contract",
        artifact_root=(tmp_path / "artifacts").as_uri(),
        params={"seed": 11},
        metrics={"m": 1.0},
        report={"model": spec.task},
        figures={},
        tags={"data_fingerprint": "x"},
        input_example=split.validation.head(5),
        promote=True,
        alias="champion",
    )
    loaded = load_version(spec.registered_name, uri, version=logged.version)
    assert loaded.card == model.card
    # the validation population's quantiles travel with the version (percentiles for the reasons)
    assert model.quantiles is not None and loaded.quantiles == model.quantiles
    assert set(loaded.quantiles.values) == set(spec.feature_names)
    np.testing.assert_array_equal(loaded.proba(split.test), model.proba(split.test))
    pd.testing.assert_frame_equal(loaded.score(split.test), model.score(split.test))
    champion = load_champion(spec.registered_name, uri)
    assert champion.version == logged.version
    # the stored file is LightGBM's text model, not a pickle
    import mlflow

    with mlflow_store(uri):
        with_model = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{spec.registered_name}/{logged.version}", dst_path=str(tmp_path / "dl")
            )
        )
    assert (with_model / "model.lgb").read_text().startswith("tree")


@pytest.mark.parametrize("task", TASKS)
def test_baseline_contract(task: str) -> None:
    spec, split = _data(task)
    baseline = spec.baseline(SETTINGS, FEATURES)
    before = split.test.copy()
    first = baseline.score(split.test)
    pd.testing.assert_frame_equal(split.test, before)
    pd.testing.assert_frame_equal(first, baseline.score(split.test))
    assert list(first.columns) == [SCORE, FRAUD_TYPE, FLAGGED]
    assert first.index.equals(split.test.index)
