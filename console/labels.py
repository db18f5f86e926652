"""Analysts' outcomes as labels: each confirm (fraud, of the flag's type) and overturn
(``normal``: a legitimate subscriber) with the model's row for the window it decided on (the
feature values the stream stored with the detection), ready for ``simguard train --extra-labels``
(``models.extra_labels``): a SIM's row is keyed by number and window end, a trunk call's by its
record id.

The file is the blocklist export's kind: created ``0640``, and in a CSV a text cell that a
spreadsheet would run as a formula (an analyst's comment ``=HYPERLINK(...)``) gets a leading ``'``
(``models.extra_labels`` takes it off the record ids again)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from streaming.blocklist.export import FILE_MODE, safe_cell
from streaming.blocklist.models import ConsoleAction, Detection

NORMAL = "normal"
COLUMNS = [
    "number", "label", "kind", "record_id", "fraud_type", "decided_by", "decided_at", "comment", "model_name",
    "model_version", "score", "window_start", "window_end",
]  # fmt: skip


def _latest_detection(session: Session, number: str, before: Any) -> Detection | None:
    return session.scalar(
        sa.select(Detection)
        .where(Detection.number == number, Detection.created_at <= before, Detection.evidence.is_not(None))
        .order_by(Detection.id.desc())
        .limit(1)
    )


def label_rows(engine: sa.Engine) -> pd.DataFrame:
    """One row per final decision of an analyst (the latest per number wins), with the feature
    values of the detection it judged as ``f_<name>`` columns."""
    rows: dict[str, dict[str, Any]] = {}
    with Session(engine) as session:
        actions = session.scalars(
            sa.select(ConsoleAction).where(ConsoleAction.action.in_(("confirm", "overturn"))).order_by(ConsoleAction.id)
        )
        for a in actions:
            det = _latest_detection(session, a.number, a.created_at)
            if det is None:
                continue  # a manual decision without a model row: nothing to learn from
            evidence = det.evidence or {}
            row = {
                "number": a.number,
                "label": det.fraud_type if a.action == "confirm" else NORMAL,
                "kind": evidence.get("kind") or "sim",
                "record_id": (evidence.get("call") or {}).get("record_id"),
                "fraud_type": det.fraud_type,
                "decided_by": a.actor,
                "decided_at": a.created_at,
                "comment": a.comment,
                "model_name": det.model_name,
                "model_version": det.model_version,
                "score": det.score,
                "window_start": evidence.get("window_start"),
                "window_end": evidence.get("window_end"),
            }
            row.update({f"f_{k}": v for k, v in (evidence.get("features") or {}).items()})
            rows[a.number] = row
    frame = pd.DataFrame(list(rows.values()))
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    for col in ("window_start", "window_end"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def export_labels(engine: sa.Engine, out: Path) -> int:
    """Write the label table to ``out`` (``.parquet`` or ``.csv``); returns the number of rows."""
    frame = label_rows(engine)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover from a crash may carry looser permissions
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # whatever the umask
    with open(fd, "wb") as fh:
        if out.suffix == ".csv":
            text = frame.astype(object).map(safe_cell) if len(frame) else frame
            fh.write(text.to_csv(index=False).encode("utf-8"))
        else:
            frame.to_parquet(fh, index=False)
    os.replace(tmp, out)
    return len(frame)
