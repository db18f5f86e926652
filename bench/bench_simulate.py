"""Benchmark ``simguard simulate`` end to end: wall time, peak RSS and rows/s.

Runs the real command in a child process (so start-up, imports and Parquet writing count) and
reads the peak resident set size of that child from ``getrusage(RUSAGE_CHILDREN)``::

    .venv/bin/python bench/bench_simulate.py                    # 100k subscribers x 2 days
    .venv/bin/python bench/bench_simulate.py --subscribers 20000 --days 1 --json

Prints one result line (or a JSON object) and exits non-zero when the command fails or takes
longer than ``--budget-s`` (the 5-minute target of the simulator's brief).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(*, subscribers: int, days: int, seed: int, out: Path) -> dict[str, Any]:
    """Run ``simguard simulate`` once into ``out`` and measure it."""
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "simulate",
        "--subscribers",
        str(subscribers),
        "--days",
        str(days),
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"simulate failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    rows = int(manifest["rows"]["cdrs"])
    # ru_maxrss is in KiB on Linux: the largest child so far, here the only one
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    return {
        "bench": "simulate",
        "command": " ".join(["simguard", *cmd[3:]]),
        "subscribers": subscribers,
        "days": days,
        "seed": seed,
        "rows": rows,
        "wall_s": round(wall_s, 2),
        "rows_per_s": round(rows / wall_s),
        "peak_rss_mb": round(peak_rss_mb),
        "output_mb": round(size_mb, 1),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the output here (default: a temp folder)")
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    tmp: Path | None = None
    out: Path = args.out
    if out is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-simulate-"))
        out = tmp / "out"
    try:
        result = run(subscribers=args.subscribers, days=args.days, seed=args.seed, out=out)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(
            f"bench simulate: {result['subscribers']} subscribers x {result['days']} days -> "
            f"{result['rows']} rows in {result['wall_s']} s ({result['rows_per_s']} rows/s), "
            f"peak RSS {result['peak_rss_mb']} MB, output {result['output_mb']} MB "
            f"[{result['nproc']} x {result['cpu']}]"
        )
    return 0 if result["wall_s"] <= args.budget_s else 1


if __name__ == "__main__":
    sys.exit(main())
