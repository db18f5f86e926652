"""Check the Java ``StatefulProcessor`` of ``bench_state.py`` (bench/jvm/SimWindows.java) against
pandas: a simulated day's CDRs streamed through it in micro-batches (``--batch-minutes``, after the
day before in one micro-batch), and a sample of each micro-batch's scoring points recomputed from
every CDR seen so far. Exits 1 when any point differs.

    .venv/bin/python bench/check_sim_windows.py --cdrs /tmp/sim10/cdrs --day 2025-03-05 \\
        --batch-minutes 180 --max-batches 3 --work /tmp/check_sim_windows
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY, HOUR, MAX_CALLS, SHORT_S = 86400, 3600, 200, 10.0


def newest(calls: pd.DataFrame, callers: set[str]) -> list[float]:
    """What the processor computes from a window's newest calls out (time order)."""
    n = len(calls)
    if n == 0:
        return [0.0] * 8
    d, t = calls["duration_s"].to_numpy(), calls["t"].to_numpy()
    suffix = np.array([int(x[-7:]) for x in calls["b_number"]])
    gaps = np.diff(t)
    cv = gaps.std() / gaps.mean() if n > 2 and gaps.sum() > 0 else 0.0
    sequential = (np.abs(np.diff(suffix)) == 1).sum() / (n - 1) if n > 1 else 0.0
    callbacks = calls["b_number"].isin(callers).mean()
    return [np.median(d), d.mean(), d.max(), (d < SHORT_S).mean(), cv, sequential, calls["b_number"].nunique(),
            callbacks]


def window(w: pd.DataFrame) -> list[float]:
    """What the processor computes over a window's events (``SimWindows.FEATURES``)."""
    voice_out, hour = w["out"] & ~w["sms"], w["t"] // 60 * 60 // 3600
    peak = hour[voice_out].value_counts().max() if voice_out.any() else 0
    callers = set(w.loc[~w["out"], "b_number"])
    return [voice_out.sum(), (~w["out"] & ~w["sms"]).sum(), (voice_out & w["answered"]).sum(),
            (w["out"] & w["sms"]).sum(), (w["out"] & w["night"]).sum(), w["b_number"].nunique(),
            w.loc[w["cell"] != "", "cell"].nunique(), w.loc[w["imei"] != "", "imei"].nunique(), peak,
            hour.nunique(), *newest(w[voice_out].tail(MAX_CALLS), callers)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", type=Path, required=True)
    parser.add_argument("--day", required=True)
    parser.add_argument("--batch-minutes", type=int, default=180)
    parser.add_argument("--max-batches", type=int, default=3)
    parser.add_argument("--sample", type=int, default=700, help="points checked per micro-batch")
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()

    from bench_state import _stream, _write_day, sim_windows, state_spark

    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    source = work / "source"
    _write_day(source, args.cdrs.resolve(), args.day, batch_minutes=args.batch_minutes, warm=True,
               max_batches=args.max_batches)
    spark = state_spark(work)
    out = sim_windows(spark, _stream(spark, source))
    got: list[tuple[int, pd.DataFrame]] = []
    query = (out.writeStream.outputMode("update").option("checkpointLocation", str(work / "checkpoint"))
             .foreachBatch(lambda frame, batch_id: got.append((batch_id, frame.toPandas())))
             .trigger(availableNow=True).start())
    query.awaitTermination()

    files = sorted(source.glob("*.parquet"))
    checked = differ = 0
    for batch_id, frame in got:
        seen = pd.concat([pd.read_parquet(f) for f in files[: batch_id + 1]])
        batch = pd.read_parquet(files[batch_id])
        points = {(e, int(t // 60 * 60 + 60)) for e, t in zip(batch["entity"], batch["t"], strict=True)}
        if points != set(zip(frame["entity"], frame["as_of"], strict=True)):
            print(f"micro-batch {batch_id}: {len(frame)} points emitted, {len(points)} expected")
            differ += 1
        by_sim = dict(tuple(seen.groupby("entity")))
        for r in frame.sample(min(len(frame), args.sample), random_state=1).itertuples():
            events = by_sim[r.entity].sort_values("t", kind="stable")
            minute = events["t"] // 60 * 60
            w24 = events[(minute >= r.as_of - DAY) & (minute < r.as_of)]
            w1 = events[(minute >= r.as_of - HOUR) & (minute < r.as_of)]
            checked += 1
            if not np.allclose(window(w24), r.w_24h) or not np.allclose(window(w1), r.w_1h):
                differ += 1
                print(f"micro-batch {batch_id}: {r.entity} as of {r.as_of} differs")
    print(f"{len(got)} micro-batches, {checked} points checked, {differ} differ")

    whole = spark.read.schema(_stream(spark, source).schema).parquet(str(source))
    batch = sim_windows(spark, whole).toPandas()
    streamed = pd.concat([frame for _, frame in got], ignore_index=True)

    def rows(frame: pd.DataFrame) -> set[tuple]:
        return {tuple(tuple(v) if isinstance(v, (list, np.ndarray)) else v for v in r)
                for r in frame.itertuples(index=False)}

    spark.stop()
    only_batch, only_stream = rows(batch) - rows(streamed), rows(streamed) - rows(batch)
    for r in sorted(only_batch | only_stream)[:6]:
        print("differs:", r)
    print(f"one batch over all the CDRs: {len(batch)} points, {len(only_batch)} not streamed, "
          f"{len(only_stream)} streamed and not in the batch")
    return 1 if differ or only_batch or only_stream or len(batch) != len(streamed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
