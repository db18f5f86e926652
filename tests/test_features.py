"""Feature definitions on hand-made CDRs (component tier: the session SparkSession)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from factories import T0, cdr, spark_frame

from features.calls import build_call_features, call_feature_names
from features.settings import FeatureSettings
from features.sim import KEY_COLUMNS, sim_feature_names
from features.sim_state import build_sim_features

pytestmark = pytest.mark.spark

SETTINGS = FeatureSettings()
ROBO = "+84961000002"
PERSON = "+84961000001"
FRIEND = "+84912000001"


def rows_by_entity(spark, records):
    frame = build_sim_features(spark_frame(spark, records), settings=SETTINGS).toPandas()
    # everything these tests send is within one day of T0: each SIM's last scoring point sees it all
    frame = frame.sort_values("window_end")
    return {r["entity"]: r for r in frame.to_dict("records")}


def test_names_are_generated_from_parameters() -> None:
    names = sim_feature_names(
        FeatureSettings(window_s=7200, short_window_s=600, cohort_bucket_s=600)
    )
    assert "calls_out_2h" in names and "calls_out_peak_1h_2h" in names and "cell_cohort_peak_10m_2h" in names
    assert "calls_out_10m" in names and "answered_share_10m" in names
    assert "calls_out_24h" in sim_feature_names(SETTINGS) and "calls_out_1h" in sim_feature_names(SETTINGS)
    assert len(set(sim_feature_names(SETTINGS))) == len(sim_feature_names(SETTINGS))
    assert "same_cli_calls_1m" in call_feature_names(SETTINGS)
    with pytest.raises(ValueError, match="multiple"):
        FeatureSettings(short_window_s=3630)
    with pytest.raises(ValueError, match="whole hours"):
        FeatureSettings(window_s=5400)


def test_robocaller_signature(spark) -> None:
    # 60 sequential, mostly unanswered, 3-second calls every 30 s from 01:00 local night time
    robo = [
        cdr(
            i,
            a_number=ROBO,
            b_number=f"+8491300{i:04d}",
            start_time=T0 + dt.timedelta(hours=18, seconds=30 * i),  # 01:00 in UTC+7
            release_cause="answered" if i % 5 == 0 else "no_answer",
            duration_s=3.0,
            a_imei="350000000000002",
        )
        for i in range(60)
    ]
    # a person: a few long calls to the same friends, who call back
    person = [
        cdr(100 + i, a_number=PERSON, b_number=FRIEND, start_time=T0 + dt.timedelta(hours=2 + 3 * i), duration_s=120.0)
        for i in range(4)
    ] + [cdr(200, a_number=FRIEND, b_number=PERSON, start_time=T0 + dt.timedelta(hours=5), duration_s=60.0)]
    rows = rows_by_entity(spark, robo + person)
    r, p = rows[ROBO], rows[PERSON]
    assert r["calls_out_24h"] == 60 and r["distinct_callees_24h"] == 60
    assert r["answered_share_24h"] == pytest.approx(12 / 60)
    assert r["short_call_share_24h"] == 1.0 and r["duration_median_24h"] == 3.0
    assert r["sequential_share_24h"] == 1.0 and r["gap_cv_24h"] == pytest.approx(0.0)
    assert r["night_share_24h"] == 1.0 and r["calls_out_peak_1h_24h"] == 60
    assert r["calls_in_24h"] == 0 and r["callback_share_24h"] == 0.0
    assert p["calls_out_24h"] == 4 and p["distinct_callees_24h"] == 1 and p["calls_per_callee_24h"] == 4.0
    assert p["calls_in_24h"] == 1 and p["callback_share_24h"] == 1.0
    assert p["duration_mean_24h"] == 120.0 and p["short_call_share_24h"] == 0.0
    assert p["sequential_share_24h"] == 0.0 and p["gap_cv_24h"] == pytest.approx(0.0)
    assert list(rows[ROBO].keys())[:3] == list(KEY_COLUMNS)


def test_simbox_cohort_and_imei_sharing(spark) -> None:
    # 8 SIMs behind 2 IMEIs in one cell, each calling in the same hour
    box = [
        cdr(
            10 * k + i,
            a_number=f"+8496200{k:04d}",
            b_number=f"+8496{3000000 + 10 * k + i:07d}",
            start_time=T0 + dt.timedelta(hours=3, minutes=5 * i + k),
            a_imei=f"35000000000010{k % 2}",
            cell_id="BOX-CELL",
        )
        for k in range(8)
        for i in range(5)
    ]
    lone = [cdr(900, a_number=PERSON, cell_id="HOME", a_imei="350000000000999", start_time=T0 + dt.timedelta(hours=3))]
    rows = rows_by_entity(spark, box + lone)
    sim = rows["+84962000003"]
    assert sim["cell_cohort_peak_1h_24h"] == 8
    assert sim["imei_shared_sims_24h"] == 4
    assert sim["onnet_share_24h"] == 1.0  # viettel SIM calling viettel numbers
    assert rows[PERSON]["cell_cohort_peak_1h_24h"] == 1 and rows[PERSON]["imei_shared_sims_24h"] == 1


def test_the_cohort_counts_only_sims_seen_by_the_scoring_time(spark) -> None:
    # three SIMs in one cell within an hour: a row must not count those that come later in the
    # hour, which a stream scoring it then has not read
    at = T0 + dt.timedelta(hours=3)
    calls = [
        cdr(1, a_number="+84962000001", start_time=at, cell_id="C1", a_imei="350000000000101"),
        cdr(2, a_number="+84962000002", start_time=at + dt.timedelta(minutes=10), cell_id="C1",
            a_imei="350000000000101"),
        cdr(3, a_number="+84962000003", start_time=at + dt.timedelta(minutes=20), cell_id="C1",
            a_imei="350000000000102"),
        cdr(4, a_number="+84962000001", start_time=at + dt.timedelta(minutes=30), cell_id="C1",
            a_imei="350000000000101"),
    ]
    frame = build_sim_features(spark_frame(spark, calls), settings=SETTINGS).toPandas()
    peak = {
        (r["entity"], int((r["window_end"] - pd.Timestamp(at).tz_convert(None)).total_seconds() // 60)): (
            r["cell_cohort_peak_1h_24h"], r["imei_shared_sims_24h"]
        )
        for r in frame.to_dict("records")
    }
    assert peak[("+84962000001", 1)] == (1, 1)
    assert peak[("+84962000002", 11)] == (2, 2)
    assert peak[("+84962000003", 21)] == (3, 1)
    assert peak[("+84962000001", 31)] == (3, 2)


def test_wangiri_counts_and_spoofed_victim_is_not_held_against_its_own_sim(spark) -> None:
    gateway = {"in_trunk_type": "international_gateway", "in_trunk_id": "IGW-1", "a_imsi": None, "a_imei": None,
               "cell_id": None, "lac": None}
    wangiri = [
        cdr(i, a_number="+88216000001", b_number=f"+8491400{i:04d}", release_cause="cancelled",
            start_time=T0 + dt.timedelta(minutes=i), **gateway)
        for i in range(20)
    ]
    spoofed = [
        cdr(100 + i, a_number=PERSON, b_number=f"+8491500{i:04d}", start_time=T0 + dt.timedelta(minutes=i),
            operator="vinaphone", **gateway)
        for i in range(20)
    ]
    rows = rows_by_entity(spark, wangiri + spoofed)
    w = rows["+88216000001"]
    assert w["cli_international_premium"] == 1 and w["gateway_share_24h"] == 1.0
    assert w["cancelled_share_24h"] == 1.0 and w["answered_share_24h"] == 0.0
    assert PERSON not in rows  # its calls on the gateway are the spoofing model's to judge


def test_call_features_for_spoofing(spark) -> None:
    gateway = {"in_trunk_type": "international_gateway", "in_trunk_id": "IGW-1", "a_imsi": None, "a_imei": None,
               "cell_id": None, "lac": None, "operator": "vinaphone"}
    at = T0 + dt.timedelta(hours=4)
    records = [
        # the owner calls from their own SIM while the same CLI arrives from abroad
        cdr(1, a_number=PERSON, start_time=at),
        cdr(2, a_number=PERSON, start_time=at + dt.timedelta(seconds=20), **gateway),
        # a roamer calling home with their own number
        cdr(3, a_number=FRIEND, start_time=at, a_roaming=True, **gateway),
        # a Do-Not-Originate hotline and an unallocated number as CLIs
        cdr(4, a_number="+842439000001", start_time=at, **gateway),
        cdr(5, a_number="+84100000000", start_time=at, **gateway),
        # an enterprise presenting its own number over domestic interconnect
        cdr(6, a_number="+84246123456789"[:13], start_time=at, in_trunk_type="domestic_interconnect",
            in_trunk_id="IC-VT", a_imsi=None, cell_id=None, lac=None),
    ]
    frame = build_call_features(spark_frame(spark, records), settings=SETTINGS).toPandas().set_index("record_id")
    assert "r000001" not in frame.index  # subscriber-originated calls are not scored
    spoof = frame.loc["r000002"]
    assert spoof["domestic_cli_on_international"] == 1 and spoof["cli_owner_roaming"] == 0
    assert spoof["same_cli_subscriber_calls_1m"] == 1 and spoof["same_cli_calls_1m"] == 1
    assert spoof["same_cli_operators_1m"] == 2
    roamer = frame.loc["r000003"]
    assert roamer["domestic_cli_on_international"] == 1 and roamer["cli_owner_roaming"] == 1
    assert roamer["same_cli_subscriber_calls_1m"] == 0
    assert frame.loc["r000004", "cli_do_not_originate"] == 1
    assert frame.loc["r000005", "cli_invalid_or_unallocated"] == 1
    enterprise = frame.loc["r000006"]
    assert enterprise["ingress_interconnect"] == 1 and enterprise["domestic_cli_on_international"] == 0
    assert enterprise["cli_home_operator_is_reporter"] == 1
    assert list(frame.columns)[-len(call_feature_names(SETTINGS)):] == call_feature_names(SETTINGS)


def test_owner_whereabouts_tell_a_spoofed_victim_from_a_roamer_with_a_stale_hlr(spark) -> None:
    """Both gateway calls present a domestic CLI and the HLR says "not roaming" for both; the
    owners' own records of the previous hours tell them apart."""
    gateway = {"in_trunk_type": "international_gateway", "in_trunk_id": "IGW-1", "a_imsi": None, "a_imei": None,
               "cell_id": None, "lac": None, "operator": "vinaphone", "a_roaming": False}
    at = T0 + dt.timedelta(hours=20)
    victim, roamer = PERSON, FRIEND
    records = [
        # the victim used their SIM at home 3 h and 1 h before (a call and an SMS)
        cdr(1, a_number=victim, start_time=at - dt.timedelta(hours=3), b_number=ROBO),
        cdr(2, a_number=victim, start_time=at - dt.timedelta(hours=1), event_type="sms"),
        # the roamer was at home 30 h before (outside the 24 h look-back), then abroad 2 h before
        cdr(3, a_number=roamer, start_time=at - dt.timedelta(hours=30)),
        cdr(4, a_number=roamer, start_time=at - dt.timedelta(hours=2), a_roaming=True, cell_id="45201-9-9",
            b_number="+84912555001"),
        cdr(5, a_number=victim, start_time=at, b_number="+84912555001", **gateway),
        # the roamer calls home to someone they called from their own SIM 2 h before
        cdr(6, a_number=roamer, start_time=at, b_number="+84912555001", **gateway),
        # the victim's own call after the spoofed one is not used for it
        cdr(7, a_number=victim, start_time=at + dt.timedelta(hours=2)),
        # a CLI with no own records at all
        cdr(8, a_number="+84961000099", start_time=at, **gateway),
    ]
    frame = build_call_features(spark_frame(spark, records), settings=SETTINGS).toPandas().set_index("record_id")
    spoofed, roaming, unknown = frame.loc["r000005"], frame.loc["r000006"], frame.loc["r000008"]
    assert (spoofed["owner_home_records_24h"], spoofed["owner_roaming_records_24h"]) == (2, 0)
    assert spoofed["owner_last_seen_roaming"] == 0
    assert (roaming["owner_home_records_24h"], roaming["owner_roaming_records_24h"]) == (0, 1)
    assert roaming["owner_last_seen_roaming"] == 1
    assert (roaming["callee_known_to_owner"], spoofed["callee_known_to_owner"]) == (1, 0)
    assert (unknown["owner_home_records_24h"], unknown["owner_roaming_records_24h"]) == (0, 0)
    assert pd.isna(unknown["owner_last_seen_roaming"])


def test_rows_are_as_of_each_interval_the_sim_called_in(spark) -> None:
    """A SIM calling at 02:00:30 and 14:00:10 is scored at 02:01 and 14:01: each row covers the
    trailing windows up to its scoring time, never a later call."""
    records = [
        cdr(1, a_number=ROBO, b_number=FRIEND, start_time=T0 + dt.timedelta(hours=2, seconds=30), duration_s=5.0),
        cdr(2, a_number=ROBO, b_number=PERSON, start_time=T0 + dt.timedelta(hours=14, seconds=10), duration_s=50.0),
    ]
    frame = build_sim_features(spark_frame(spark, records), settings=SETTINGS).toPandas()
    robo = frame[frame["entity"] == ROBO].set_index("window_end").sort_index()
    t0 = pd.Timestamp(T0.replace(tzinfo=None))
    h, m = pd.Timedelta(hours=1), pd.Timedelta(minutes=1)
    assert list(robo.index) == [t0 + 2 * h + m, t0 + 14 * h + m]
    early, late = robo.loc[t0 + 2 * h + m], robo.loc[t0 + 14 * h + m]
    assert early["window_start"] == t0 + 2 * h + m - 24 * h
    assert (early["calls_out_24h"], early["calls_out_1h"], early["duration_max_24h"]) == (1, 1, 5.0)
    assert early["hours_seen_24h"] == pytest.approx(1 / 60)
    # 12 h later: the long window still holds the first call, the short one only the second
    assert (late["calls_out_24h"], late["calls_out_1h"], late["duration_max_24h"]) == (2, 1, 50.0)
    assert (late["duration_max_1h"], late["hours_seen_24h"]) == (50.0, pytest.approx(12 + 1 / 60))


def test_a_call_leaves_the_long_window_after_a_day(spark) -> None:
    records = [
        cdr(1, a_number=ROBO, start_time=T0 + dt.timedelta(hours=1)),
        cdr(2, a_number=ROBO, start_time=T0 + dt.timedelta(hours=26)),
    ]
    frame = build_sim_features(spark_frame(spark, records), settings=SETTINGS).toPandas()
    last = frame[frame["entity"] == ROBO].sort_values("window_end").iloc[-1]
    assert (last["calls_out_24h"], last["calls_out_1h"]) == (1, 1)


def test_a_point_capped_at_the_newest_event_counts_that_event(spark) -> None:
    """The stream caps a point at its micro-batch's newest event; when that event starts exactly on
    a minute boundary, the point (the end of the event's second) still counts it."""
    from features.sim import sim_features_at, sim_state
    from features.sim_windows import AS_OF, scoring_points

    start = T0 + dt.timedelta(hours=3)
    rows, members = sim_state(spark_frame(spark, [cdr(1, a_number=ROBO, start_time=start)]), settings=SETTINGS)
    points = scoring_points(rows, settings=SETTINGS, horizon=start.timestamp())
    assert [r[AS_OF] for r in points.collect()] == [start.timestamp() + 1]
    row = sim_features_at(rows, members, points, settings=SETTINGS).toPandas().iloc[0]
    assert row["calls_out_24h"] == 1


def test_list_features_read_the_newest_calls_of_the_window(spark) -> None:
    """With ``max_calls`` 5, a SIM that made 12 calls in one hour and 3 two hours later: counts
    see all 15, the list features the newest 5 (the first hour's last two and the later three)."""
    settings = FeatureSettings(max_calls=5)
    first = [
        cdr(i, a_number=ROBO, b_number=f"+8491300{i:04d}", duration_s=10.0 + i,
            start_time=T0 + dt.timedelta(hours=1, minutes=2 * i))
        for i in range(12)
    ]
    later = [
        cdr(100 + i, a_number=ROBO, b_number=f"+8491400{i:04d}", duration_s=1.0 + i,
            start_time=T0 + dt.timedelta(hours=3, minutes=i))
        for i in range(3)
    ]
    frame = build_sim_features(spark_frame(spark, first + later), settings=settings).toPandas()
    last = frame[frame["entity"] == ROBO].sort_values("window_end").iloc[-1]
    assert last["calls_out_24h"] == 15 and last["distinct_callees_24h"] == 5
    assert last["duration_max_24h"] == 21.0 and last["duration_median_24h"] == 3.0


def test_partial_rows_of_a_minute_merge_into_the_row_of_all_the_cdrs(spark) -> None:
    """The stream's state holds one row per micro-batch that saw a minute: merged, they give the
    rows of all the CDRs at once, even when a late call lands between two earlier ones."""
    from features.sim import sim_features_at, sim_state
    from features.sim_windows import scoring_points

    start = T0 + dt.timedelta(hours=5)
    calls = [
        cdr(i, a_number=ROBO, b_number=f"+8491300{i:04d}", duration_s=float(3 + i), cell_id=f"C{i % 3}",
            start_time=start + dt.timedelta(seconds=7 * i))
        for i in range(8)
    ] + [cdr(50, a_number=PERSON, b_number=ROBO, start_time=start + dt.timedelta(seconds=20))]
    first, late = calls[0::2], calls[1::2]
    whole_rows, members = sim_state(spark_frame(spark, calls), settings=SETTINGS)
    points = scoring_points(whole_rows, settings=SETTINGS)
    parts = [sim_state(spark_frame(spark, half), settings=SETTINGS) for half in (first, late)]
    part_rows = parts[0][0].unionByName(parts[1][0])
    part_members = parts[0][1].unionByName(parts[1][1])
    assert part_rows.count() > whole_rows.count()  # the minute has a row from each half
    want = sim_features_at(whole_rows, members, points, settings=SETTINGS, partials=False).toPandas()
    got = sim_features_at(part_rows, part_members, points, settings=SETTINGS).toPandas()
    keys = ["entity", "window_end"]
    pd.testing.assert_frame_equal(
        got.sort_values(keys).reset_index(drop=True), want.sort_values(keys).reset_index(drop=True), check_exact=True
    )
