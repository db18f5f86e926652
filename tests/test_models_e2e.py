"""End to end: a small simulation through ``simguard train``, ``evaluate --json`` and ``score``
in a temporary home (component tier: the session SparkSession is reused by the CLI).

One module-scoped simulation and home; the steps run in order and each asserts what a user would
notice: a weak first version becomes champion, a better one takes over, an identical retrain does
not, evaluate prints the same numbers twice, and batch scoring writes flagged SIMs and calls with
reasons.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SUBSCRIBERS, DAYS, SEED = 2000, 3, 5


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> dict[str, Any]:
    from pipeline.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, subscribers=SUBSCRIBERS, days=DAYS, seed=SEED)
    home = tmp_path_factory.mktemp("home")
    env = {
        "SIMGUARD_HOME": str(home),
        # the CLI joins the session SparkSession; keep its test settings
        "SIMGUARD_SPARK__CONF__spark.sql.shuffle.partitions": "2",
    }
    return {"cdrs": out / "cdrs", "labels": out / "labels", "home": home, "env": env, "state": {}}


def run(world: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(args), env={**world["env"], **(env or {})}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def champion(world: dict[str, Any], name: str) -> int | None:
    from models.registry import champion_version

    uri = f"sqlite:///{Path(world['home']).resolve() / 'mlflow' / 'mlflow.db'}"
    return champion_version(name, uri)


def evaluate_json(world: dict[str, Any], *extra: str) -> dict[str, dict[str, Any]]:
    out = run(world, "evaluate", "--cdrs", str(world["cdrs"]), "--labels", str(world["labels"]), "--json", *extra)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {line["model"]: line for line in lines}


def test_0_before_training_errors_are_one_line(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from pipeline.cli import main

    for key, value in world["env"].items():
        monkeypatch.setenv(key, value)
    cases = [
        (["evaluate", "--cdrs", str(world["cdrs"]), "--labels", str(world["labels"])], "run `simguard train` first"),
        (["score", "--cdrs", str(world["cdrs"]), "--out", str(tmp_path / "x.txt")], ".parquet or .csv"),
        (["train", "--cdrs", str(world["cdrs"]), "--labels", str(tmp_path)], "label file"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and err[-1].startswith("error: ") and message in err[-1], err


def test_1_weak_first_version_becomes_champion(world: dict[str, Any]) -> None:
    # two boosting rounds: a deliberately weak model that a real one must beat
    weak = {"SIMGUARD_MODELS__SPAM_SIM__num_boost_round": "2", "SIMGUARD_MODELS__SPOOF_CALL__num_boost_round": "2"}
    run(world, "train", "--cdrs", str(world["cdrs"]), "--labels", str(world["labels"]), env=weak)
    assert champion(world, "simguard-spam-sim") == 1 and champion(world, "simguard-spoof-call") == 1
    world["state"]["weak"] = evaluate_json(world)


def test_2_better_version_takes_over_and_identical_retrain_does_not(world: dict[str, Any]) -> None:
    args = ("train", "--cdrs", str(world["cdrs"]), "--labels", str(world["labels"]), "--seed", "7")
    out = run(world, *args)
    assert "simguard-spam-sim" in out
    assert champion(world, "simguard-spam-sim") == 2
    # the same data and seed give the same model: a tie is not an improvement
    run(world, *args)
    assert champion(world, "simguard-spam-sim") == 2 and champion(world, "simguard-spoof-call") in (1, 2)
    from models.registry import load_version

    uri = f"sqlite:///{Path(world['home']).resolve() / 'mlflow' / 'mlflow.db'}"
    v2, v3 = (load_version("simguard-spam-sim", uri, version=v) for v in (2, 3))
    assert v2.booster.model_to_string() == v3.booster.model_to_string()


def test_3_evaluate_is_reproducible_and_beats_the_weak_version(world: dict[str, Any]) -> None:
    first, second = evaluate_json(world), evaluate_json(world)
    assert first == second
    spam, spoof = first["spam-sim"], first["spoof-call"]
    for line in (spam, spoof):
        for key in ("model", "version", "recall_at_fpr", "target_fpr", "pr_auc", "baseline_recall_at_fpr",
                    "recall_by_type"):
            assert key in line
    assert spam["version"] == 2 and set(spam["recall_by_type"]) == {"spam_robocall", "simbox", "wangiri"}
    assert "simbox_evasive" in spam["recall_by_population"]
    assert spam["pr_auc"] > world["state"]["weak"]["spam-sim"]["pr_auc"]
    # on this small world the model already finds most fraud SIMs and beats the rules
    assert spam["recall_at_fpr"] >= 0.8 and spam["recall_at_fpr"] > spam["baseline_recall_at_fpr"]
    assert spoof["recall_at_fpr"] >= 0.8
    old = evaluate_json(world, "--model-version", "1")
    assert old["spam-sim"]["version"] == 1 and old == world["state"]["weak"]


def test_4_score_writes_flagged_sims_and_calls_with_reasons(world: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "flagged.csv"
    text = run(world, "score", "--cdrs", str(world["cdrs"]), "--out", str(out))
    assert "flagged" in text
    flagged = pd.read_csv(out)
    assert {"sim", "call"} <= set(flagged["kind"])
    assert flagged["reasons"].str.len().gt(0).all()
    labels = pd.read_parquet(world["labels"] / "sims.parquet")
    fraud = set(labels.loc[labels["label"] != "normal", "a_number"])
    sims = flagged[flagged["kind"] == "sim"]
    # most flagged SIMs are fraud (the rest are look-alikes or fraud before it started)
    assert sims["id"].isin(fraud).mean() > 0.8
