"""What the regulator sees, computed from the hash-chained audit log: the counts of the report
(``simguard audit report``) and of the console's regulator pages.

Counts come from the log, not from the state tables (which a database user can rewrite): blocks,
reviews opened, confirmations, overturns, expiries per day, operator, fraud type and model
version; overturn rate per version; spoofed calls per ingress trunk; appeals filed and
decided in the console; each number's history. Every number is shown as a keyed pseudonym
(:mod:`streaming.blocklist.pseudonym`), the same one everywhere, and free text is scrubbed of
anything that looks like one.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections import Counter, defaultdict
from typing import Any

import sqlalchemy as sa

from streaming.blocklist import audit
from streaming.blocklist.db import as_utc
from streaming.blocklist.dossiers import champion_history, load_dossiers

#: the counted kinds of event: the columns of every count table (report and console)
COUNT_KINDS = ("blocks", "reviews", "confirmations", "review_overturns", "block_overturns", "expiries",
               "allowlist_lifts", "appeals", "appeals_decided")
#: a review's final statuses and what the report counts them as
FINAL_REVIEW = {"confirmed": "confirmations", "overturned": "review_overturns"}
#: a phone number inside free text (not part of a hash, an id or a decimal)
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.+])\+?\d{8,15}(?![\w.])")


def _day(iso: str | None) -> str | None:
    return None if not iso else iso[:10]


def _in(iso: str | None, first: dt.date, last: dt.date) -> bool:
    return bool(iso) and first.isoformat() <= iso[:10] <= last.isoformat()


class Names:
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


def _when(iso: str | None) -> dt.datetime | None:
    return as_utc(dt.datetime.fromisoformat(iso)) if iso else None


def appeals_summary(appeals: dict[int, dict[str, Any]], first: dt.date, last: dt.date) -> dict[str, Any]:
    """Appeals received in the period (their last snapshot in the log): decided, time to decision,
    past due."""
    now = dt.datetime.now(dt.UTC)
    received = [a for a in appeals.values() if _in(a["created_at"], first, last)]
    decided = [a for a in received if a["decided_at"]]
    hours = sorted((_when(a["decided_at"]) - _when(a["created_at"])).total_seconds() / 3600 for a in decided)
    past_due = [a for a in received if not a["decided_at"] and _when(a["due_at"]) < now]
    return {
        "available": True, "note": "appeals filed and decided in the console, as logged",
        "received": len(received), "decided": len(decided), "past_due": len(past_due),
        "median_hours_to_decision": statistics.median(hours) if hours else None,
        "p95_hours_to_decision": hours[min(len(hours) - 1, int(0.95 * len(hours)))] if hours else None,
        "hours_to_decision": hours,
    }


def summarise(rows: list[Any], *, first: dt.date, last: dt.date, names: Names) -> dict[str, Any]:
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
            changed = r["status"] != (before or {"status": "open"})["status"]
            if changed:  # escalated and watch wait for a decision; confirmed and overturned are one
                at = r.get("resolved_at") or row.at.isoformat()
                history[pseud].append({"at": at, "number": pseud, "action": f"review {r['status']}",
                                       "actor": r.get("resolved_by") or row.actor, "fraud_type": r["fraud_type"],
                                       "model_version": version, "note": names.text(r.get("resolution_note"))})
            kind = FINAL_REVIEW.get(r["status"])
            if kind and changed and (before is None or before["status"] not in FINAL_REVIEW):
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


def appeal_history(appeals: dict[int, dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    """Each appeal as lines of its number's history: filed, and decided when it was."""
    out: list[dict[str, Any]] = []
    for a in appeals.values():
        pseud = names(a["number"])
        out.append({"at": a["created_at"], "number": pseud, "action": "appeal filed", "actor": a["filed_by"],
                    "operator": a["operator"], "note": names.text(a["reason"])})
        if a["decided_at"]:
            out.append({"at": a["decided_at"], "number": pseud, "action": f"appeal {a['status']}",
                        "actor": a["decided_by"], "operator": a["operator"], "note": names.text(a["outcome_comment"])})
    return out


def _count_appeals(summary: dict[str, Any], items: list[dict[str, Any]], first: dt.date, last: dt.date) -> None:
    """Appeals filed and decided per day, operator, and the fraud type and version of the block
    the number was under (its last block before the appeal)."""
    history = summary["number_history"]
    for item in items:
        blocks = [h for h in history.get(item["number"], ()) if h["action"] == "block" and h["at"] <= item["at"]]
        block = blocks[-1] if blocks else {}
        item.update(fraud_type=block.get("fraud_type"), model_version=block.get("model_version"))
        if not _in(item["at"], first, last):
            continue
        kind = "appeals" if item["action"] == "appeal filed" else "appeals_decided"
        for table, key in (("per_day", _day(item["at"])), ("per_operator", item["operator"]),
                           ("per_fraud_type", item["fraud_type"]), ("per_model_version", item["model_version"])):
            row = summary[table].setdefault(key or "unknown", {})
            row[kind] = row.get(kind, 0) + 1
    for item in items:
        history.setdefault(item["number"], []).append(item)
    for pseud in {i["number"] for i in items}:
        history[pseud].sort(key=lambda d: d["at"] or "")
    for table in ("per_day", "per_operator", "per_fraud_type", "per_model_version"):
        summary[table] = dict(sorted(summary[table].items()))


def report_data(
    engine: sa.Engine, names: Names, *, first: dt.date, last: dt.date, retention_days: int, key_id: str
) -> dict[str, Any]:
    """The whole report as a JSON-able dict, numbers pseudonymised (the plots are drawn from it)."""
    verification = audit.verify(engine)
    rows = list(audit.records(engine))
    summary = summarise(rows, first=first, last=last, names=names)
    appeals = {a["id"]: a for row in rows for a in (row.content or {}).get("appeals", ())}
    _count_appeals(summary, appeal_history(appeals, names), first, last)
    moves = champion_history(engine)
    dossiers = load_dossiers(engine)
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
        "pseudonym_key_id": key_id,
        "audit_log": {"head_seq": verification.head_seq, "head_hash": verification.head_hash,
                      "verify": verification.as_dict(), "retention_days": retention_days},
        **summary,
        "appeals": appeals_summary(appeals, first, last),
        "champion_history": moves,
        "dossiers": [dossiers[k] for k in sorted(in_force) if k in dossiers],
        "versions_without_dossier": [f"{n} v{v}" for n, v in sorted(in_force) if (n, v) not in dossiers],
    }
    return names.text(report)
