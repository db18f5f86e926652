"""Synthetic feature tables for the model tests (no Spark), and the labelling and split tests.

The factories give each class its DOMAIN.md signature with overlap, so a model has something to
learn and a bad one can fail: robocallers dial many distinct numbers in short calls, SIM boxes
never receive calls or send SMS, Wangiri CLIs are international premium numbers whose calls are
cancelled, look-alike businesses (``call_centre``) are busy but answered and called back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.calls import CALL_KEY_COLUMNS, call_feature_names
from features.settings import FeatureSettings
from features.sim import KEY_COLUMNS, sim_feature_names
from models.dataset import ACTIVE, LABEL, POPULATION, UNIT_CLASS, label_call_rows, label_sim_rows
from models.split import day_boundaries, scored_at, time_split

FEATURES = FeatureSettings()
DAY0 = pd.Timestamp("2025-03-03", tz="UTC")
#: (population, label, count)
POPULATIONS = (
    ("ordinary", "normal", 400),
    ("call_centre", "normal", 20),
    ("spam_robocall", "spam_robocall", 24),
    ("simbox", "simbox", 24),
    ("simbox_evasive", "simbox", 12),
    ("wangiri", "wangiri", 8),
)


def _sim_row(rng: np.random.Generator, population: str) -> dict[str, float]:
    w, b = FEATURES.window, FEATURES.burst
    busy = population in ("spam_robocall", "simbox", "simbox_evasive", "wangiri", "call_centre")
    calls = float(rng.poisson(150 if busy else 8) + 1)
    row = {name: float(rng.random()) for name in sim_feature_names(FEATURES)}
    row.update(
        {
            f"calls_out_{w}": calls,
            f"calls_out_peak_{b}_{w}": float(max(1, calls // rng.integers(4, 12))),
            f"distinct_callee_ratio_{w}": float(rng.uniform(0.85, 1.0) if busy else rng.uniform(0.2, 0.9)),
            f"duration_mean_{w}": float(
                rng.uniform(3, 25) if population == "spam_robocall" else rng.uniform(20, 200)
            ),
            # evasive boxes stage some incoming calls and SMS every day (DOMAIN.md)
            f"calls_in_{w}": float(0 if population == "simbox" else rng.poisson(3) + (population == "simbox_evasive")),
            f"sms_out_{w}": float(0 if population == "simbox" else rng.poisson(2) + (population == "simbox_evasive")),
            f"callback_share_{w}": float(
                rng.uniform(0.2, 0.7) if population in ("ordinary", "call_centre") else rng.uniform(0, 0.05)
            ),
            f"cancelled_share_{w}": float(rng.uniform(0.85, 1.0) if population == "wangiri" else rng.uniform(0, 0.1)),
            "cli_international_premium": float(population == "wangiri"),
            "cli_domestic_mobile": float(population != "wangiri"),
        }
    )
    if rng.random() < 0.1:
        row[f"duration_mean_{w}"] = np.nan  # no answered call in the window
    return row


def sim_tables(seed: int = 0, *, days: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(features, labels)`` shaped like ``sim_features`` and ``labels/sims.parquet``."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    # scored every 6 h, each row covering the 24 h before it
    ends = [DAY0 + pd.Timedelta(hours=6 * i) for i in range(1, 4 * days + 1)]
    n = 0
    for population, label, count in POPULATIONS:
        for _ in range(count):
            entity = f"+8496{n:07d}"
            n += 1
            # fraud starts at a random time; before that the SIM looks ordinary
            activity = DAY0 + pd.Timedelta(hours=float(rng.uniform(0, 24 * days - 12))) if label != "normal" else pd.NaT
            labels.append({"a_number": entity, "label": label, "population": population, "activity_start": activity})
            for end in ends:
                start = end - pd.Timedelta(seconds=FEATURES.window_s)
                behaves = population if label == "normal" or end > activity else "ordinary"
                rows.append({"entity": entity, "window_start": start, "window_end": end, **_sim_row(rng, behaves)})
    features = pd.DataFrame(rows)[[*KEY_COLUMNS, *sim_feature_names(FEATURES)]]
    return features, pd.DataFrame(labels)


def call_tables(seed: int = 0, *, days: int = 3, per_day: int = 1500) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(features, labels)`` shaped like ``call_features`` and ``labels/calls.parquet``."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    spoofed = rng.random(n) < 0.04
    roamer = ~spoofed & (rng.random(n) < 0.05)
    intl = spoofed | roamer | (rng.random(n) < 0.3)
    kinds = np.where(spoofed, rng.choice(["domestic_cli_not_roaming", "do_not_originate", "unallocated"], n), None)
    domestic = spoofed | roamer | (~intl)
    names = call_feature_names(FEATURES)
    c = names[9].removeprefix("same_cli_calls_")
    o = names[12].removeprefix("owner_home_records_")
    t = names[16].removeprefix("trunk_calls_")
    features = pd.DataFrame(
        {
            "record_id": [f"r{i:07d}" for i in range(n)],
            "a_number": [f"+8491{i:07d}" for i in range(n)],
            "operator": "viettel",
            "in_trunk_type": np.where(intl, "international_gateway", "domestic_interconnect"),
            "in_trunk_id": "igw-01",
            "start_time": DAY0 + pd.to_timedelta(rng.uniform(0, 86400 * days, n), unit="s"),
            "cli_kind_code": np.where(domestic, 0, 6),
            "cli_invalid_or_unallocated": (kinds == "unallocated").astype(int),
            "cli_do_not_originate": (kinds == "do_not_originate").astype(int),
            "cli_domestic": domestic.astype(int),
            "ingress_international": intl.astype(int),
            "ingress_interconnect": (~intl).astype(int),
            "domestic_cli_on_international": (domestic & intl).astype(int),
            "cli_home_operator_is_reporter": rng.integers(0, 2, n),
            # a stale HLR answer shows some spoofing victims as roaming
            "cli_owner_roaming": (roamer | (spoofed & (rng.random(n) < 0.05))).astype(int),
            f"same_cli_calls_{c}": rng.poisson(0.1, n) + spoofed * rng.poisson(2, n),
            f"same_cli_operators_{c}": 1 + spoofed * rng.integers(0, 2, n),
            f"same_cli_subscriber_calls_{c}": rng.poisson(0.05, n),
            # the owner's own records: at home for victims and most callers, abroad for roamers
            f"owner_home_records_{o}": np.where(roamer, 0, rng.poisson(4, n)),
            f"owner_roaming_records_{o}": np.where(roamer, rng.poisson(2, n), 0),
            "owner_last_seen_roaming": roamer.astype(float),
            "callee_known_to_owner": (roamer & (rng.random(n) < 0.7)).astype(int),
            # a campaign's route carries bursts of domestic numbers whose owners are at home
            f"trunk_calls_{t}": rng.poisson(60, n),
            f"trunk_domestic_not_roaming_{t}": rng.poisson(0.5, n) + spoofed * rng.poisson(10, n),
            f"trunk_bad_cli_share_{t}": rng.uniform(0, 0.02, n) + spoofed * rng.uniform(0, 0.3, n),
            "answered": rng.integers(0, 2, n),
            "duration_s": rng.exponential(60, n),
        }
    )[[*CALL_KEY_COLUMNS, *names]]
    labels = pd.DataFrame({"record_id": features["record_id"], "spoofed": spoofed, "spoof_kind": kinds})
    return features, labels[spoofed | (rng.random(n) < 0.5)]  # legitimate calls may be unlisted


def test_fraud_window_is_positive_only_once_it_overlaps_the_activity() -> None:
    features, labels = sim_tables()
    rows = label_sim_rows(features, labels)
    fraud = rows[rows[UNIT_CLASS] != "normal"].merge(
        labels.rename(columns={"a_number": "unit"})[["unit", "activity_start"]], on="unit"
    )
    overlapping = fraud["row_end"] > fraud["activity_start"]
    assert (fraud.loc[overlapping, LABEL] > 0).all()
    assert (fraud.loc[~overlapping, LABEL] == 0).all() and (~fraud.loc[~overlapping, ACTIVE]).all()
    assert (rows.loc[rows[UNIT_CLASS] == "normal", LABEL] == 0).all()
    assert set(rows[POPULATION]) == {p for p, _, _ in POPULATIONS}


def test_labelling_does_not_mutate_and_fills_unlisted_entities() -> None:
    features, labels = sim_tables()
    before = features.copy()
    rows = label_sim_rows(features, labels[labels["label"] != "normal"])
    pd.testing.assert_frame_equal(features, before)
    assert (rows.loc[rows[UNIT_CLASS] == "normal", POPULATION] == "unlabelled").all()
    calls, call_labels = call_tables()
    crows = label_call_rows(calls, call_labels)
    assert crows[LABEL].sum() == call_labels["spoofed"].sum()
    assert "roamer" in set(crows[POPULATION]) and "do_not_originate" in set(crows[POPULATION])


def test_split_assigns_rows_by_the_time_they_are_scored() -> None:
    features, labels = sim_tables()
    rows = label_sim_rows(features, labels)
    b = day_boundaries(scored_at(rows).max(), validation_days=1, test_days=1)
    assert b.test_start == DAY0 + pd.Timedelta(days=2) and b.validation_start == DAY0 + pd.Timedelta(days=1)
    split = time_split(rows, b)
    # a row covers only the day before it: training rows end by the validation day, and a row
    # scored at midnight belongs to the day that ends there
    assert (split.train["row_end"] <= b.validation_start).all()
    assert ((split.validation["row_end"] > b.validation_start) & (split.validation["row_end"] <= b.test_start)).all()
    assert (split.test["row_end"] > b.test_start).all()
    n_sims = rows["unit"].nunique()
    assert len(split.train) == len(split.validation) == len(split.test) == 4 * n_sims


def test_split_needs_enough_days() -> None:
    from models.errors import ModelError

    features, labels = sim_tables(days=1)
    rows = label_sim_rows(features, labels)
    with pytest.raises(ModelError, match="split is empty"):
        time_split(rows, day_boundaries(scored_at(rows).max(), validation_days=1, test_days=1))
