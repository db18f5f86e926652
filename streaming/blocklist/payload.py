"""The one JSON form of a blocklist entry, as every channel sends it to an operator.

Every operator receives every entry; what it must do with it depends on who it is
(DOMAIN.md: the home operator bars outgoing calls, the others bar incoming calls from the number):

- scope ``all``, recipient is the number's home operator: ``bar_outgoing_calls``;
- scope ``all``, any other recipient (or a foreign number, e.g. a Wangiri CLI):
  ``reject_incoming_calls``;
- scope ``trunk:<type>``: ``reject_cli_on_trunk``: reject calls presenting the number that arrive
  on that kind of trunk, except the owner's own calls while roaming (``roaming_exception``).

An ``unblock`` lifts whatever the same key's earlier ``block`` asked for. Consumers keep the
highest ``version`` per key and ignore anything older: channels deliver at least once.

>>> entry_key("all", "+84961000001")
'all|+84961000001'
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from features.numbering import NumberingPlan
from streaming.blocklist.decision import SCOPE_ALL, TRUNK_SCOPE_PREFIX
from streaming.blocklist.records import EntryRecord

#: bumped when a field changes meaning; consumers may check it
PAYLOAD_SCHEMA = 1


def entry_key(scope: str, number: str) -> str:
    """The Kafka key and the dedupe key of an entry: ``{scope}|{number}``."""
    return f"{scope}|{number}"


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def enforcement(entry: EntryRecord, *, operator: str, plan: NumberingPlan) -> tuple[str, str | None]:
    """(what ``operator`` must do, the number's home operator)."""
    info = plan.classify(entry.number)
    home = info.operator
    if entry.scope.startswith(TRUNK_SCOPE_PREFIX):
        return "reject_cli_on_trunk", home
    if entry.scope == SCOPE_ALL and home == operator:
        return "bar_outgoing_calls", home
    return "reject_incoming_calls", home


def entry_dict(entry: EntryRecord) -> dict[str, Any]:
    """The entry itself, the same for every recipient (analysts' answers, audits)."""
    out: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "version": entry.version,
        "key": entry_key(entry.scope, entry.number),
        "number": entry.number,
        "scope": entry.scope,
        "action": entry.action,
        "fraud_type": entry.fraud_type,
        "score": entry.score,
        "reasons": list(entry.reasons),
        "model_name": entry.model_name,
        "model_version": entry.model_version,
        "decided_by": entry.decided_by,
        "reported_by": entry.reported_by,
        "created_at": _iso(entry.created_at),
        "expires_at": _iso(entry.expires_at),
        "lifts_version": entry.lifts_version,
    }
    if entry.scope.startswith(TRUNK_SCOPE_PREFIX):
        out["trunk_type"] = entry.scope.removeprefix(TRUNK_SCOPE_PREFIX)
        out["roaming_exception"] = True
    if entry.decided_by != "model":
        # an analyst's or the system's note says why a number was lifted; a model's note only
        # repeats the threshold, which the score already shows
        out["note"] = entry.note
    return out


def entry_payload(entry: EntryRecord, *, operator: str, plan: NumberingPlan) -> dict[str, Any]:
    """The entry as ``operator`` receives it: what it must enforce, and for whom."""
    enforce, home = enforcement(entry, operator=operator, plan=plan)
    return {**entry_dict(entry), "operator": operator, "home_operator": home, "enforce": enforce}


def payload_json(entry: EntryRecord, *, operator: str, plan: NumberingPlan) -> bytes:
    return json.dumps(entry_payload(entry, operator=operator, plan=plan), separators=(",", ":")).encode()
