"""CSV snapshots: the blocks in force for one operator at one version.

The file's first line is a comment with the version (``# simguard blocklist version=N ...``):
an operator that loads the snapshot continues with ``GET /blocklist?since=N`` or its Kafka topic,
dropping records whose version is not above N.

Cells are written so a spreadsheet cannot run them (OWASP, CSV injection): a text cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``. Plain
numbers are left alone, E.164 numbers (``+84961000001``) included: digits after a sign are no
formula. Files are created ``0640`` (owner writes, group reads), never world-readable.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

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


#: snapshots are for the operator's systems and the team that runs them, not for every local user
FILE_MODE = 0o640
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet shows it, never as a formula it would evaluate.

    >>> safe_cell("=1+2"), safe_cell("@SUM(A1)"), safe_cell("+84961000001"), safe_cell("-0.5"), safe_cell(3)
    ("'=1+2", "'@SUM(A1)", '+84961000001', '-0.5', 3)
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


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
    tmp.unlink(missing_ok=True)  # a leftover from a crash may carry looser permissions
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away; this is the mode we mean
    with open(fd, "w", newline="", encoding="utf-8") as fh:
        fh.write(
            f"# simguard blocklist version={version} operator={operator} rows={len(entries)} exported_at={stamp}\n"
        )
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for entry in entries:
            row = entry_payload(entry, operator=operator, plan=plan)
            row["reasons"] = " | ".join(row["reasons"])
            writer.writerow({k: safe_cell(v) for k, v in row.items()})
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
