"""``simguard train --extra-labels`` end to end at small scale: an analyst's overturn and confirm in
the console's store, ``simguard labels export``, then training with them; the MLflow run and
the dossier say how many analysts' labels were used (component tier: the session SparkSession).

The CDRs are the session's simulation (tests/stream_run.py), whose feature tables the new home's
cache already holds; the models train with few boosting rounds: this test is about which rows
the labels reach and what the run and the dossier say, not about the models' quality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from console_data import sim_decision
from stream_run import home_with_features
from typer.testing import CliRunner

from pipeline.cli import app

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_train_uses_the_analysts_labels_and_says_how_many(
    spark: Any, base_settings, simulation: dict[str, Any], tmp_path: Path
) -> None:
    from console.actions import ConsoleStore
    from models.dataset import LABEL, ROW_END, UNIT
    from models.registry import mlflow_store
    from pipeline.modeling import prepare
    from streaming.blocklist.db import make_engine
    from streaming.blocklist.dossiers import load_dossiers

    sim = simulation["sim"]
    home = home_with_features(simulation, tmp_path / "home")
    env = {"SIMGUARD_HOME": str(home), "SIMGUARD_SPARK__CONF__spark.sql.shuffle.partitions": "2",
           "SIMGUARD_MODELS__SPAM_SIM__num_boost_round": "20", "SIMGUARD_MODELS__SPOOF_CALL__num_boost_round": "20"}
    settings = base_settings.model_copy(update={"home": home})
    # the rows the analysts judge: a fraud SIM's training window, an ordinary SIM's test-day window
    split = prepare(spark, settings, cdrs=sim / "cdrs", labels=sim / "labels").tasks["spam-sim"].split
    overturned = split.train[split.train[LABEL] > 0].iloc[0]
    confirmed = split.test[split.test[LABEL] == 0].iloc[0]

    store = ConsoleStore.open(settings.database_url)
    try:
        for row, action in ((overturned, "block"), (confirmed, "review")):
            end = row[ROW_END].to_pydatetime()
            store.apply_decisions([sim_decision(row[UNIT], 0.95, action=action, observed=end)], now=end)
        store.decide(overturned[UNIT], "overturn", comment="a family phone", actor="lan", request_id="o-0001")
        store.decide(confirmed[UNIT], "confirm", comment="a robocaller", actor="lan", request_id="c-0001")
    finally:
        store.close()

    runner = CliRunner()
    labels = tmp_path / "analysts.parquet"
    out = runner.invoke(app, ["labels", "export", "--out", str(labels)], env=env, catch_exceptions=False)
    assert out.exit_code == 0 and "2 labels written" in out.output, out.output
    args = ["train", "--cdrs", str(sim / "cdrs"), "--labels", str(sim / "labels"), "--extra-labels", str(labels)]
    out = runner.invoke(app, args, env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "simguard-spam-sim v1 trained with 2 analysts' labels (1 relabelled, 1 moved" in out.stdout
    assert "simguard-spoof-call v1 trained with 0 analysts' labels" in out.stdout

    with mlflow_store(f"sqlite:///{home.resolve() / 'mlflow' / 'mlflow.db'}") as client:
        run = client.get_run(client.get_model_version("simguard-spam-sim", "1").run_id)
    assert run.data.params["extra_labels_used"] == "2"
    assert run.data.params["extra_labels"] == str(labels.resolve())
    assert (run.data.metrics["extra_labels.relabelled"], run.data.metrics["extra_labels.moved"]) == (1.0, 1.0)
    # the moved test-day row is a training row now
    assert int(run.data.params["split.test_rows"]) == len(split.test) - 1

    engine = make_engine(settings.database_url)
    try:
        sources = load_dossiers(engine)[("simguard-spam-sim", 1)]["data"]["label_sources"]
    finally:
        engine.dispose()
    said = "analysts' confirmations and overturns (analysts.parquet): 2 training rows"
    assert any(s.startswith(said) for s in sources), sources
