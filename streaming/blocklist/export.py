"""CSV snapshots: the blocks in force for one operator at one version.

The file's first line is a comment with the version (``# simguard blocklist version=N ...``):
an operator that loads the snapshot continues with ``GET /blocklist?since=N`` or its Kafka topic,
dropping records whose version is not above N.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

from features.numbering import NumberingPlan
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.payload import entry_payload
from streaming.blocklist.store import BlocklistStore

COLUMNS = (
    "version",
    "number",
    "scope",
    "enforce",
    "home_operator",
    "fraud_type",
    "score",
    "model_name",
    "model_version",
    "decided_by",
    "created_at",
    "expires_at",
    "reasons",
)


def export_csv(
    store: BlocklistStore,
    *,
    operator: str,
    out: str | Path,
    plan: NumberingPlan,
    at_version: int | None = None,
) -> tuple[int, int]:
    """Write the snapshot to ``out`` (atomically: a temporary file then a rename); returns
    (version, rows)."""
    if operator not in plan.operators:
        raise BlocklistError(f"unknown operator {operator!r}; the numbering plan has {', '.join(plan.operators)}")
    version, entries = store.snapshot(at_version=at_version)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        fh.write(
            f"# simguard blocklist version={version} operator={operator} rows={len(entries)} exported_at={stamp}\n"
        )
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for entry in entries:
            row = entry_payload(entry, operator=operator, plan=plan)
            row["reasons"] = " | ".join(row["reasons"])
            writer.writerow(row)
    os.replace(tmp, out)
    return version, len(entries)


def read_snapshot_version(path: str | Path) -> int:
    """The version written in a snapshot's first line."""
    with Path(path).open(encoding="utf-8") as fh:
        first = fh.readline()
    for part in first.split():
        if part.startswith("version="):
            return int(part.removeprefix("version="))
    raise BlocklistError(f"{path}: not a simguard blocklist snapshot (no version= in the first line)")
