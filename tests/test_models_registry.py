"""The registry as the streaming scorer uses it: versions, the champion alias, reloads, and what
is stored with each version (unit tier: a SQLite MLflow store in a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_models_data import FEATURES, sim_tables

from models.errors import ModelError
from models.plots import evaluation_figures
from models.registry import (
    CARD_FILE,
    champion_version,
    code_version,
    data_fingerprint,
    load_champion,
    log_version,
    mlflow_store,
)
from models.settings import BoosterSettings, ModelSettings
from models.tasks import SPAM_SIM, boundaries_for, evaluate_model, fit_task, split_frame, task_spec

SETTINGS = ModelSettings(spam_sim=BoosterSettings(num_boost_round=15))


@pytest.mark.slow  # trains three versions and round-trips them through MLflow
def test_champion_reloads_only_when_the_alias_moves(tmp_path: Path) -> None:
    spec = task_spec(SPAM_SIM, SETTINGS, FEATURES)
    features, labels = sim_tables(seed=4)
    rows = spec.label(features, labels)
    b = boundaries_for(rows, SETTINGS)
    split = split_frame(rows, b)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ModelError, match="run `simguard train` first"):
        load_champion(spec.registered_name, uri)

    def log(seed: int, *, promote: bool) -> int:
        model = fit_task(spec, split, settings=SETTINGS, features=FEATURES, seed=seed)
        ev = evaluate_model(spec, model, split, settings=SETTINGS, features=FEATURES, boundaries=b)
        figures = evaluation_figures(model, ev.report, model_units=ev.model_units, baseline_units=ev.baseline_units)
        return log_version(
            model, registered_name=spec.registered_name, tracking_uri=uri, registry_uri=None, experiment="t",
            artifact_root=(tmp_path / "art").as_uri(), params={"seed": seed}, metrics={"test.pr_auc": 0.5},
            report=ev.report, figures=figures, tags={"data_fingerprint": "abc"},
            input_example=split.validation.head(3), promote=promote, alias="champion",
        ).version

    assert log(1, promote=True) == 1
    first = load_champion(spec.registered_name, uri)
    assert first.version == 1 and first.name == spec.registered_name
    assert load_champion(spec.registered_name, uri, current=first) is first
    assert log(2, promote=False) == 2
    assert champion_version(spec.registered_name, uri) == 1
    assert load_champion(spec.registered_name, uri, current=first) is first
    assert log(3, promote=True) == 3
    moved = load_champion(spec.registered_name, uri, current=first)
    assert moved is not first and moved.version == 3
    assert not np.array_equal(moved.proba(split.test), first.proba(split.test))

    with mlflow_store(uri) as client:
        mv = client.get_model_version(spec.registered_name, "3")
        assert float(mv.tags["threshold"]) == moved.threshold and mv.tags["data_fingerprint"] == "abc"
        run = client.get_run(mv.run_id)
        stored = {a.path for a in client.list_artifacts(mv.run_id)} | {
            a.path for a in client.list_artifacts(mv.run_id, "plots")
        }
        assert {CARD_FILE, "evaluation.json", "plots/pr_curve.png", "plots/roc_curve.png",
                "plots/confusion_matrix.png", "plots/feature_importance.png", "plots/calibration.png"} <= stored
        assert run.data.params["seed"] == "3"


def test_fingerprint_covers_features_and_label_files(tmp_path: Path) -> None:
    features, labels = sim_tables(seed=1)
    path = tmp_path / "sims.parquet"
    labels.to_parquet(path)
    base = data_fingerprint([features], [path])
    assert base == data_fingerprint([features.copy()], [path])
    changed = features.copy()
    changed.iloc[0, 3] += 1
    assert data_fingerprint([changed], [path]) != base
    labels.assign(label="normal").to_parquet(path)
    assert data_fingerprint([features], [path]) != base


def test_code_version_names_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    from importlib.metadata import version

    import models.registry as registry

    # a git checkout of this code: the commit it is at and whether it has local changes
    git = ["git", "-C", str(registry.PACKAGE_ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           check=True).stdout.strip()
    info = code_version()
    assert info["package_version"] == version("simguard")
    assert info["git_commit"] == head and len(head) == 40
    assert info["git_dirty"] == str(bool(dirty)).lower()
    # an installed package outside any checkout: the package version alone, no made-up commit
    monkeypatch.setattr(registry, "PACKAGE_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert code_version() == {"package_version": info["package_version"]}
