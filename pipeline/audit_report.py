"""The regulator's report (``simguard audit report``), built from the audit log.

Counts come from the hash-chained log, not from the state tables (which a database user can
rewrite): blocks, reviews opened, confirmations, overturns, expiries per day, operator, fraud type
and model version; overturn rate per version; spoofed calls per ingress trunk; appeals when the
console's ``appeals`` table exists; the dossiers of the versions in force; the head hash and
``verify``'s result. Every number is shown as a keyed pseudonym (:mod:`streaming.blocklist.pseudonym`),
the same one everywhere in the report, and free text is scrubbed of anything that looks like one.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from pipeline.config import Settings

#: a phone number inside free text (not part of a hash, an id or a decimal)
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.+])\+?\d{8,15}(?![\w.])")


def _day(iso: str | None) -> str | None:
    return None if not iso else iso[:10]


def _in(iso: str | None, first: dt.date, last: dt.date) -> bool:
    return bool(iso) and first.isoformat() <= iso[:10] <= last.isoformat()


class _Names:
    """Pseudonyms for numbers, and free text with numbers replaced by theirs."""

    def __init__(self, pseudonym) -> None:
        self.p = pseudonym

    def __call__(self, number: str | None) -> str | None:
        return self.p(number)

    def text(self, value: Any) -> Any:
        if isinstance(value, str):
            return _NUMBER_IN_TEXT.sub(lambda m: self.p(m.group()), value)
        if isinstance(value, dict):
            return {self.text(k): self.text(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.text(v) for v in value]
        return value


def _appeals(engine: sa.Engine, first: dt.date, last: dt.date) -> dict[str, Any]:
    """Appeals from the console's table when it exists (its columns are found by name)."""
    inspector = sa.inspect(engine)
    if not inspector.has_table("appeals"):
        return {"available": False, "note": "no appeals table in this database (the analyst console is not "
                "installed): appeals are counted as zero", "received": 0, "decided": 0, "past_due": 0,
                "median_hours_to_decision": None, "p95_hours_to_decision": None, "hours_to_decision": []}
    cols = {c["name"] for c in inspector.get_columns("appeals")}
    received_col = next((c for c in ("received_at", "created_at", "filed_at") if c in cols), None)
    decided_col = next((c for c in ("decided_at", "resolved_at", "closed_at") if c in cols), None)
    due_col = next((c for c in ("due_at", "deadline_at") if c in cols), None)
    table = sa.Table("appeals", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
    from streaming.blocklist.db import as_utc

    def when(row: dict[str, Any], col: str | None) -> dt.datetime | None:
        v = row.get(col) if col else None
        if isinstance(v, str):
            v = dt.datetime.fromisoformat(v)
        return as_utc(v) if isinstance(v, dt.datetime) else None

    now = dt.datetime.now(dt.UTC)
    received = [r for r in rows if (t := when(r, received_col)) and first <= t.date() <= last]
    decided = [r for r in received if when(r, decided_col)]
    hours = sorted((when(r, decided_col) - when(r, received_col)).total_seconds() / 3600 for r in decided)
    past_due = [r for r in received if not when(r, decided_col) and (d := when(r, due_col)) and d < now]
    return {
        "available": True, "note": f"from the appeals table ({received_col}, {decided_col}, {due_col})",
        "received": len(received), "decided": len(decided), "past_due": len(past_due),
        "median_hours_to_decision": statistics.median(hours) if hours else None,
        "p95_hours_to_decision": hours[min(len(hours) - 1, int(0.95 * len(hours)))] if hours else None,
        "hours_to_decision": hours,
    }


def summarise(rows: list[Any], *, first: dt.date, last: dt.date, names: _Names) -> dict[str, Any]:
    """The counts of the report from the audit records (all of them: state needs the history)."""
    blocks: dict[int, dict[str, Any]] = {}
    reviews_seen: dict[int, dict[str, Any]] = {}
    per_day: dict[str, Counter] = defaultdict(Counter)
    per_operator: dict[str, Counter] = defaultdict(Counter)
    per_type: dict[str, Counter] = defaultdict(Counter)
    per_version: dict[str, Counter] = defaultdict(Counter)
    blocks_by_type_day: dict[str, Counter] = defaultdict(Counter)
    trunks: Counter = Counter()
    decisions: list[dict[str, Any]] = []
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def count(kind: str, *, day: str, operator: str | None, fraud_type: str | None, version: str) -> None:
        per_day[day][kind] += 1
        per_operator[operator or "unknown"][kind] += 1
        per_type[fraud_type or "unknown"][kind] += 1
        per_version[version][kind] += 1

    for row in rows:
        c = row.content or {}
        for e in c.get("entries", ()):
            if e["action"] == "block":
                blocks[e["version"]] = e
            lifted = blocks.get(e.get("lifts_version")) if e["action"] == "unblock" else None
            source = lifted or e
            version = f"{source.get('model_name') or '(unnamed model)'} v{source.get('model_version') or '-'}"
            pseud = names(e["number"])
            item = {"at": e["created_at"], "number": pseud, "scope": e["scope"], "action": e["action"],
                    "fraud_type": e.get("fraud_type"), "decided_by": e["decided_by"], "actor": e.get("actor"),
                    "model_version": version, "operator": source.get("reported_by"), "version": e["version"],
                    "note": names.text(e.get("note"))}
            history[pseud].append(item)
            if not _in(e["created_at"], first, last):
                continue
            decisions.append(item)
            day = _day(e["created_at"])
            if e["action"] == "block":
                kind = "blocks"
                blocks_by_type_day[e.get("fraud_type") or "unknown"][day] += 1
            elif e["decided_by"] == "analyst":
                kind = "block_overturns"
            elif e.get("actor") == "expiry":
                kind = "expiries"
            else:
                kind = "allowlist_lifts"
            count(kind, day=day, operator=source.get("reported_by"), fraud_type=e.get("fraud_type"), version=version)
        for r in c.get("reviews", ()):
            before = reviews_seen.get(r["id"])
            reviews_seen[r["id"]] = r
            version = f"{r.get('model_name') or '(unnamed model)'} v{r.get('model_version') or '-'}"
            pseud = names(r["number"])
            if before is None:
                history[pseud].append({"at": r["created_at"], "number": pseud, "action": "review opened",
                                       "fraud_type": r["fraud_type"], "model_version": version})
                if _in(r["created_at"], first, last):
                    count("reviews", day=_day(r["created_at"]), operator=r.get("reported_by"),
                          fraud_type=r["fraud_type"], version=version)
            if r["status"] != "open" and (before is None or before["status"] == "open"):
                kind = "confirmations" if r["status"] == "confirmed" else "review_overturns"
                history[pseud].append({"at": r["resolved_at"], "number": pseud, "action": f"review {r['status']}",
                                       "actor": r.get("resolved_by"), "fraud_type": r["fraud_type"],
                                       "model_version": version, "note": names.text(r.get("resolution_note"))})
                if _in(r["resolved_at"], first, last):
                    count(kind, day=_day(r["resolved_at"]), operator=r.get("reported_by"),
                          fraud_type=r["fraud_type"], version=version)
        if _in(row.at.isoformat(), first, last):
            for op, ttype, tid, blocked, review in c.get("trunk_calls", ()):
                trunks[(op, ttype, tid)] += blocked + review

    rates = {}
    for version, counts in sorted(per_version.items()):
        decided = counts["blocks"] + counts["reviews"]
        overturned = counts["block_overturns"] + counts["review_overturns"]
        rates[version] = {"decisions": decided, "overturned": overturned,
                          "overturn_rate": overturned / decided if decided else None}
    return {
        "per_day": {k: dict(v) for k, v in sorted(per_day.items())},
        "per_operator": {k: dict(v) for k, v in sorted(per_operator.items())},
        "per_fraud_type": {k: dict(v) for k, v in sorted(per_type.items())},
        "per_model_version": {k: dict(v) for k, v in sorted(per_version.items())},
        "blocks_per_day_by_type": {k: dict(sorted(v.items())) for k, v in sorted(blocks_by_type_day.items())},
        "overturn_rate_per_version": rates,
        "spoofed_calls_per_trunk": [{"operator": op, "trunk_type": t, "trunk_id": i, "calls": n}
                                    for (op, t, i), n in sorted(trunks.items(), key=lambda kv: -kv[1])],
        "decisions": sorted(decisions, key=lambda d: (d["at"], d["version"])),
        "number_history": {k: sorted(v, key=lambda d: d["at"] or "") for k, v in sorted(history.items())},
    }


def build_audit_report(settings: Settings, *, first: dt.date, last: dt.date) -> dict[str, Any]:
    from streaming.blocklist import audit
    from streaming.blocklist.db import make_engine
    from streaming.blocklist.dossiers import champion_history, load_dossiers
    from streaming.blocklist.migrate import upgrade
    from streaming.blocklist.pseudonym import Pseudonymizer

    names = _Names(Pseudonymizer(settings.audit.pseudonym_key, settings.audit.pseudonym_key_id))
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        verification = audit.verify(engine)
        rows = list(audit.records(engine))
        summary = summarise(rows, first=first, last=last, names=names)
        moves = champion_history(engine)
        dossiers = load_dossiers(engine)
        appeals = _appeals(engine, first, last)
    finally:
        engine.dispose()
    in_force = {(m["registered_name"], int(m["version"])) for m in moves if _day(m["at"]) <= last.isoformat()}
    latest: dict[str, int] = {}
    for m in moves:
        if _day(m["at"]) < first.isoformat():
            latest[m["registered_name"]] = int(m["version"])
    in_force |= set(latest.items())
    for d in summary["decisions"]:
        name, _, version = d["model_version"].rpartition(" v")
        if version.isdigit() and (name, int(version)) in dossiers:
            in_force.add((name, int(version)))
    report = {
        "period": {"from": first.isoformat(), "to": last.isoformat()},
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "pseudonym_key_id": settings.audit.pseudonym_key_id,
        "audit_log": {"head_seq": verification.head_seq, "head_hash": verification.head_hash,
                      "verify": verification.as_dict(), "retention_days": settings.audit.retention_days},
        **summary,
        "appeals": appeals,
        "champion_history": moves,
        "dossiers": [dossiers[k] for k in sorted(in_force) if k in dossiers],
        "versions_without_dossier": [f"{n} v{v}" for n, v in sorted(in_force) if (n, v) not in dossiers],
    }
    return names.text(report)


#: the evaluation plots ``simguard train`` logs with every version (``models.plots``)
CURVES = {"PR curve": "plots/pr_curve.png", "ROC curve": "plots/roc_curve.png"}


def version_curves(settings: Settings, dossiers: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The PR and ROC plots of each dossier's version from its MLflow run, base64 PNG; a version
    whose run is not reachable is left out (the report says so)."""
    import base64
    import tempfile
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from models.registry import mlflow_store

    out: dict[str, dict[str, str]] = {}
    with mlflow_store(settings.mlflow_tracking_uri, settings.mlflow.registry_uri) as client, \
            tempfile.TemporaryDirectory() as tmp:
        for d in dossiers:
            run_id = (d.get("provenance") or {}).get("run_id")
            if not run_id:
                continue
            found = {}
            for title, artifact in CURVES.items():
                try:
                    local = client.download_artifacts(run_id, artifact, tmp)
                except (MlflowException, OSError):
                    continue
                found[title] = base64.b64encode(Path(local).read_bytes()).decode()
            if found:
                out[f"{d['registered_name']} v{d['version']}"] = found
    return out


def write_html(report: dict[str, Any], out, *, curves: dict[str, dict[str, str]] | None = None) -> None:
    from pathlib import Path

    from pipeline.audit_html import render

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report, curves=curves or {}), encoding="utf-8")
