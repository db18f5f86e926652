"""End to end: a small simulation through ``simguard train``, ``evaluate --json`` and ``score``
in a temporary home (component tier: the session SparkSession is reused by the CLI).

Each test stands alone: it asks for the state it needs through module-scoped fixtures (a fresh
home, a home with a weak first version, then one where a better version took over and an
identical retrain did not), so any one of them can run by itself, in any order. Each asserts what
a user would notice: a weak first version becomes champion, a better one takes over, an identical
retrain does not, evaluate prints the same numbers twice, and batch scoring writes flagged SIMs
and calls with reasons.

The simulation is the session's (tests/stream_run.py); each home starts with its feature tables in
its cache, as after a first ``simguard train`` on the same CDRs, so no test here builds features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from stream_run import home_with_features
from typer.testing import CliRunner

from pipeline.cli import app

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@dataclass(frozen=True)
class World:
    cdrs: Path
    labels: Path
    home: Path
    env: dict[str, str]

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.home.resolve() / 'mlflow' / 'mlflow.db'}"


def new_world(simulation: dict[str, Any], home: Path) -> World:
    home_with_features(simulation, home)
    env = {
        "SIMGUARD_HOME": str(home),
        # the CLI joins the session SparkSession; keep its test settings
        "SIMGUARD_SPARK__CONF__spark.sql.shuffle.partitions": "2",
    }
    return World(simulation["sim"] / "cdrs", simulation["sim"] / "labels", home, env)


@pytest.fixture(scope="module")
def untrained(simulation: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, spark: Any) -> World:
    """A home where nothing was trained yet."""
    return new_world(simulation, tmp_path_factory.mktemp("home-untrained"))


@dataclass(frozen=True)
class Trained:
    world: World
    #: ``evaluate --json`` of the weak first version, when it was the champion
    weak: dict[str, dict[str, Any]]
    #: champion versions after the weak train, the better train and the identical retrain
    champions: list[tuple[int | None, int | None]]


def champions(world: World) -> tuple[int | None, int | None]:
    return champion(world, "simguard-spam-sim"), champion(world, "simguard-spoof-call")


@pytest.fixture(scope="module")
def trained(simulation: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Trained:
    """A weak first version (two boosting rounds), then a better one (seed 7), then the same
    training again."""
    world = new_world(simulation, tmp_path_factory.mktemp("home-trained"))
    weak_env = {"SIMGUARD_MODELS__SPAM_SIM__num_boost_round": "2", "SIMGUARD_MODELS__SPOOF_CALL__num_boost_round": "2"}
    run(world, "train", "--cdrs", str(world.cdrs), "--labels", str(world.labels), env=weak_env)
    history = [champions(world)]
    weak = evaluate_json(world)
    args = ("train", "--cdrs", str(world.cdrs), "--labels", str(world.labels), "--seed", "7")
    out = run(world, *args)
    assert "simguard-spam-sim" in out
    history.append(champions(world))
    run(world, *args)
    history.append(champions(world))
    return Trained(world, weak, history)


def run(world: World, *args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(args), env={**world.env, **(env or {})}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def champion(world: World, name: str) -> int | None:
    from models.registry import champion_version

    return champion_version(name, world.mlflow_uri)


def evaluate_json(world: World, *extra: str) -> dict[str, dict[str, Any]]:
    out = run(world, "evaluate", "--cdrs", str(world.cdrs), "--labels", str(world.labels), "--json", *extra)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {line["model"]: line for line in lines}


def test_before_training_errors_are_one_line(
    untrained: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from pipeline.cli import main

    world = untrained
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    cases = [
        (["evaluate", "--cdrs", str(world.cdrs), "--labels", str(world.labels)], "run `simguard train` first"),
        (["score", "--cdrs", str(world.cdrs), "--out", str(tmp_path / "x.txt")], ".parquet or .csv"),
        (["train", "--cdrs", str(world.cdrs), "--labels", str(tmp_path)], "label file"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and err[-1].startswith("error: ") and message in err[-1], err


def test_weak_first_version_becomes_champion(trained: Trained) -> None:
    assert trained.champions[0] == (1, 1)
    assert trained.weak["spam-sim"]["version"] == 1 and trained.weak["spoof-call"]["version"] == 1


def test_every_version_has_its_dossier_and_every_alias_move_is_logged(trained: Trained) -> None:
    from streaming.blocklist import audit
    from streaming.blocklist.db import make_engine
    from streaming.blocklist.dossiers import champion_history, load_dossiers

    engine = make_engine(f"sqlite:///{trained.world.home.resolve() / 'simguard.db'}")
    try:
        dossiers = load_dossiers(engine)
        moves = [(m["registered_name"], m["version"]) for m in champion_history(engine)]
        assert audit.verify(engine).ok
    finally:
        engine.dispose()
    names = ("simguard-spam-sim", "simguard-spoof-call")
    assert set(dossiers) == {(n, v) for n in names for v in (1, 2, 3)}
    assert all({t["result"] for t in d["targets"]} <= {"pass", "fail"} and d["features"] for d in dossiers.values())
    # one logged move per change of champion the registry shows
    for i, name in enumerate(names):
        seen = [c[i] for c in trained.champions]
        expected = [v for k, v in enumerate(seen) if k == 0 or v != seen[k - 1]]
        assert [v for n, v in moves if n == name] == expected


def test_better_version_takes_over_and_identical_retrain_does_not(trained: Trained) -> None:
    after_better, after_same = trained.champions[1], trained.champions[2]
    assert after_better[0] == 2
    # the same data and seed give the same model: a tie is not an improvement
    assert after_same[0] == 2 and after_same[1] == after_better[1] and after_same[1] in (1, 2)
    from models.registry import load_version

    v2, v3 = (load_version("simguard-spam-sim", trained.world.mlflow_uri, version=v) for v in (2, 3))
    assert v2.booster.model_to_string() == v3.booster.model_to_string()


def test_a_version_has_a_cold_threshold_chosen_on_the_validation_day_alone(
    trained: Trained, spark: Any, base_settings: Any
) -> None:
    """A stream started on an empty state scores its first day without the day before; those rows
    are judged at a second threshold, chosen for the same target FPR on the validation day's rows
    computed from that day's CDRs alone, and the dossier and evaluate say so."""
    from models.registry import load_version
    from models.split import Split
    from models.tasks import SPAM_SIM, evaluate_model, tune_threshold
    from pipeline.modeling import prepare
    from streaming.blocklist.db import make_engine
    from streaming.blocklist.dossiers import load_dossiers

    world = trained.world
    version = load_version("simguard-spam-sim", world.mlflow_uri, version=2)
    settings = base_settings.model_copy(update={"home": world.home})
    prepared = prepare(spark, settings, cdrs=world.cdrs, labels=world.labels)
    data, b = prepared.tasks[SPAM_SIM], prepared.boundaries
    cold = data.cold_validation
    assert cold is not None and len(cold) > 0
    # the validation day's rows without the day before: never more calls than the same row with it
    both = cold.merge(data.split.validation, on=["entity", "window_end"], suffixes=("", "_warm"))
    assert len(both) == len(cold)
    assert (both["calls_out_24h"] <= both["calls_out_24h_warm"]).all()
    assert (both["calls_out_24h"] < both["calls_out_24h_warm"]).any()
    assert version.card.cold_threshold == tune_threshold(data.spec, version, cold)
    assert version.card.cold_threshold > version.threshold

    def fpr(rows, threshold: float) -> float:
        split = Split(train=data.split.train, validation=data.split.validation, test=rows)
        return evaluate_model(data.spec, version.with_threshold(threshold), split, settings=settings.models,
                              features=settings.features, boundaries=b).report["test"]["fpr"]

    # the reason for it: at the warm threshold, cold rows flag more ordinary SIMs than the target
    # (out of sample, on the 10k world's test day: BENCHMARKS.md, bench/bench_cold.py)
    assert fpr(cold, version.threshold) > data.spec.target_fpr
    engine = make_engine(f"sqlite:///{world.home.resolve() / 'simguard.db'}")
    try:
        dossier = load_dossiers(engine)[("simguard-spam-sim", 2)]
    finally:
        engine.dispose()
    assert dossier["settings_in_force"]["cold_threshold"] == version.card.cold_threshold
    # evaluate reports it beside the threshold (version 2 is the champion); the calls have none
    line = evaluate_json(world)
    assert line["spam-sim"]["cold_threshold"] == version.card.cold_threshold
    assert line["spoof-call"]["cold_threshold"] is None


def test_evaluate_is_reproducible_and_beats_the_weak_version(trained: Trained) -> None:
    world = trained.world
    first, second = evaluate_json(world), evaluate_json(world)
    assert first == second
    spam, spoof = first["spam-sim"], first["spoof-call"]
    for line in (spam, spoof):
        for key in ("model", "version", "recall_at_fpr", "target_fpr", "pr_auc", "baseline_recall_at_fpr",
                    "recall_by_type"):
            assert key in line
    assert spam["version"] == 2 and set(spam["recall_by_type"]) == {"spam_robocall", "simbox", "wangiri"}
    assert "simbox_evasive" in spam["recall_by_population"]
    # better where it blocks: more fraud SIMs at no more false positives (over all thresholds,
    # PR-AUC, the two-round version can come out as high on this small world)
    weak = trained.weak["spam-sim"]
    assert spam["recall_at_fpr"] > weak["recall_at_fpr"] and spam["fpr"] <= weak["fpr"]
    # on this small world the model already finds most fraud SIMs and beats the rules
    assert spam["recall_at_fpr"] >= 0.8 and spam["recall_at_fpr"] > spam["baseline_recall_at_fpr"]
    assert spoof["recall_at_fpr"] >= 0.8
    old = evaluate_json(world, "--model-version", "1")
    assert old["spam-sim"]["version"] == 1 and old == trained.weak


def test_score_writes_flagged_sims_and_calls_with_reasons(trained: Trained, tmp_path: Path) -> None:
    world = trained.world
    out = tmp_path / "flagged.csv"
    text = run(world, "score", "--cdrs", str(world.cdrs), "--out", str(out))
    assert "flagged" in text
    flagged = pd.read_csv(out)
    assert {"sim", "call"} <= set(flagged["kind"])
    assert flagged["reasons"].str.len().gt(0).all()
    labels = pd.read_parquet(world.labels / "sims.parquet")
    fraud = set(labels.loc[labels["label"] != "normal", "a_number"])
    sims = flagged[flagged["kind"] == "sim"]
    # most flagged SIMs are fraud (the rest are look-alikes or fraud before it started)
    assert sims["id"].isin(fraud).mean() > 0.8
    # windows reaching before the first record are flagged above the cold threshold only
    from models.registry import load_champion

    champion = load_champion("simguard-spam-sim", world.mlflow_uri)
    first = pd.read_parquet(world.cdrs)["start_time"].min()
    first = (first.tz_localize("UTC") if first.tzinfo is None else first).floor("min")
    cold = pd.to_datetime(sims["window_start"], utc=True) < first
    assert cold.any() and (sims.loc[cold, "score"] > champion.cold_threshold).all()
