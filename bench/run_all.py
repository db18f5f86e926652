"""`make bench`: every benchmark in bench/, one after the other (see BENCHMARKS.md)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

BENCHES = ("bench_simulate.py", "bench_train.py")


def main() -> int:
    here = Path(__file__).resolve().parent
    for name in BENCHES:
        print(f"== {name}", flush=True)
        sys.argv = [str(here / name)]
        try:
            runpy.run_path(str(here / name), run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                return int(exc.code) if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
