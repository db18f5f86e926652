"""Analysts' labels as training rows (``simguard train --extra-labels``): the row each label names
is relabelled, moved out of validation/test, or built from the stored feature values; the table
comes from the console's ``labels export`` (unit tier: no Spark)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from console_data import sim_decision
from test_models_data import FEATURES, call_tables, sim_tables

from console.actions import ConsoleStore
from console.labels import export_labels
from models.dataset import LABEL, POPULATION, ROW_END, UNIT, UNIT_CLASS
from models.errors import ModelError
from models.extra_labels import ANALYST, add_extra_labels, read_extra_labels
from models.settings import ModelSettings
from models.tasks import SPAM_SIM, SPOOF_CALL, boundaries_for, split_frame, task_spec

SETTINGS = ModelSettings()


@pytest.fixture(scope="module")
def sims():
    spec = task_spec(SPAM_SIM, SETTINGS, FEATURES)
    features, labels = sim_tables(seed=2)
    rows = spec.label(features, labels)
    return spec, split_frame(rows, boundaries_for(rows, SETTINGS))


def label(number: str, value: str, window_end: pd.Timestamp, **features: float) -> dict:
    start = window_end - pd.Timedelta(hours=24)
    row = {"number": number, "label": value, "kind": "sim", "window_start": start, "window_end": window_end}
    return row | {f"f_{k}": v for k, v in features.items()}


def test_labelled_rows_join_training_and_leave_validation_and_test(sims) -> None:
    spec, split = sims
    fraud_train = split.train[split.train[LABEL] > 0].iloc[0]
    normal_test = split.test[split.test[LABEL] == 0].iloc[0]
    when = split.test[ROW_END].max() + pd.Timedelta(minutes=5)
    extra = pd.DataFrame(
        [
            label(fraud_train[UNIT], "normal", fraud_train[ROW_END]),  # an overturn of a training row
            label(normal_test[UNIT], "spam_robocall", normal_test[ROW_END]),  # a confirm on the test day
            label("+84969999999", "simbox", when, calls_out_24h=480.0, calls_in_24h=0.0),  # a row not in the tables
            # a trunk call's label: not this task's
            {"number": "+849601", "label": "spoofed_call", "kind": "call", "record_id": "r1", "window_end": pd.NaT},
        ]
    )
    got, counts = add_extra_labels(split, extra, task=SPAM_SIM, classes=spec.classes, feature_names=spec.feature_names)
    assert (counts.used, counts.relabelled, counts.moved, counts.added) == (3, 1, 1, 1)

    def rows(frame: pd.DataFrame, unit: str, end: pd.Timestamp) -> pd.DataFrame:
        return frame[(frame[UNIT] == unit) & (frame[ROW_END] == end)]

    assert rows(got.train, fraud_train[UNIT], fraud_train[ROW_END])[LABEL].tolist() == [0]
    moved = rows(got.train, normal_test[UNIT], normal_test[ROW_END])
    assert moved[LABEL].tolist() == [spec.classes.index("spam_robocall")]
    # the row keeps the feature values of the tables, and is no longer scored in test
    names = list(spec.feature_names)
    np.testing.assert_array_equal(moved[names].to_numpy(), split.test.loc[[normal_test.name], names].to_numpy())
    assert rows(got.test, normal_test[UNIT], normal_test[ROW_END]).empty
    assert len(got.test) == len(split.test) - 1 and len(got.validation) == len(split.validation)
    added = rows(got.train, "+84969999999", when).iloc[0]
    assert (added[LABEL], added[UNIT_CLASS], added[POPULATION]) == (spec.classes.index("simbox"), "simbox", ANALYST)
    assert added["calls_out_24h"] == 480.0 and np.isnan(added["answered_share_24h"])
    assert len(got.train) == len(split.train) + 2
    # the input is untouched
    assert rows(split.train, fraud_train[UNIT], fraud_train[ROW_END])[LABEL].tolist() == [fraud_train[LABEL]]


def test_call_labels_move_the_trunk_call_into_training() -> None:
    spec = task_spec(SPOOF_CALL, SETTINGS, FEATURES)
    sim_features, sim_labels = sim_tables(seed=2)
    calls, call_labels = call_tables(seed=2)
    split = split_frame(spec.label(calls, call_labels), boundaries_for(task_spec(SPAM_SIM, SETTINGS, FEATURES).label(
        sim_features, sim_labels), SETTINGS))  # fmt: skip
    call = split.validation.iloc[3]
    extra = pd.DataFrame(
        [
            {"number": call["a_number"], "label": "normal", "kind": "call", "record_id": call[UNIT],
             "window_end": None},
            label("+84960000000", "spam_robocall", split.train[ROW_END].iloc[0]),  # a SIM label: not this task's
        ]
    )
    got, counts = add_extra_labels(
        split, extra, task=SPOOF_CALL, classes=spec.classes, feature_names=spec.feature_names
    )
    assert (counts.used, counts.moved) == (1, 1)
    assert got.train.loc[got.train[UNIT] == call[UNIT], LABEL].tolist() == [0]
    assert call[UNIT] not in set(got.validation[UNIT])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_labels_exported_by_the_console_find_their_rows(sims, tmp_path: Path, suffix: str) -> None:
    import stat

    spec, split = sims
    target = split.train[split.train[LABEL] == 0].iloc[0]
    observed = target[ROW_END].to_pydatetime()
    store = ConsoleStore.open(f"sqlite:///{tmp_path / 'bl.db'}")
    out = tmp_path / f"labels{suffix}"
    try:
        store.apply_decisions([sim_decision(target[UNIT], 0.8, action="review", observed=observed)], now=observed)
        store.decide(target[UNIT], "confirm", comment='=HYPERLINK("http://evil")', actor="lan", request_id="x-0001")
        assert export_labels(store.engine, out) == 1
    finally:
        store.close()
    # the analysts' notes and the numbers they judged: not for every local user
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    if suffix == ".csv":  # a spreadsheet shows the comment, it does not run it
        assert "'=HYPERLINK(\"\"http://evil\"\")" in out.read_text()
    extra = read_extra_labels(out)
    got, counts = add_extra_labels(split, extra, task=SPAM_SIM, classes=spec.classes, feature_names=spec.feature_names)
    assert (counts.used, counts.relabelled) == (1, 1)
    row = got.train[(got.train[UNIT] == target[UNIT]) & (got.train[ROW_END] == target[ROW_END])]
    assert row[LABEL].tolist() == [spec.classes.index("spam_robocall")]


def test_a_missing_or_foreign_table_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="simguard labels export"):
        read_extra_labels(tmp_path / "nope.parquet")
    pd.DataFrame({"number": ["+1"], "when": [dt.datetime(2026, 1, 1)]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(ModelError, match=r"missing column\(s\) \['label', 'window_end'\]"):
        read_extra_labels(tmp_path / "x.csv")


def test_a_csv_keeps_numbers_and_record_ids_as_written(tmp_path: Path) -> None:
    """E.164 numbers keep their ``+``, numeric record ids stay text, and the export's guard
    against formulas comes off a record id again."""
    path = tmp_path / "labels.csv"
    path.write_text("number,label,kind,record_id,window_end\n+84961000001,normal,call,'=r-1,\n"
                    "+84961000002,spoofed_call,call,007,\n")
    extra = read_extra_labels(path)
    assert extra["number"].tolist() == ["+84961000001", "+84961000002"]
    assert extra["record_id"].tolist() == ["=r-1", "007"]
