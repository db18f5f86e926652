"""A flag's activity chart from the calls stored with its evidence: calls per hour (answered and
not), and distinct callees per hour, as an embeddable PNG (matplotlib, no display)."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; imported with the app so the first flag page is not the slow one
from matplotlib.dates import DateFormatter, HourLocator
from matplotlib.figure import Figure

#: call results that count as answered (ISUP/SIP normal clearing)
ANSWERED = {"16", "normal", "answered", "normal_clearing", "200"}


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _answered(call: Mapping[str, Any]) -> bool:
    duration = call.get("duration_s")
    if isinstance(duration, (int, float)) and duration > 0:
        return True
    return str(call.get("result", "")).lower() in ANSWERED


def hourly(calls: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per hour with calls: calls, answered, distinct callees (oldest first)."""
    hours: dict[dt.datetime, dict[str, Any]] = {}
    for call in calls:
        t = _time(call.get("time"))
        if t is None:
            continue
        h = hours.setdefault(
            t.replace(minute=0, second=0, microsecond=0), {"calls": 0, "answered": 0, "callees": set()}
        )
        h["calls"] += 1
        h["answered"] += int(_answered(call))
        if call.get("callee"):
            h["callees"].add(call["callee"])
    return [
        {"hour": h, "calls": v["calls"], "answered": v["answered"], "callees": len(v["callees"])}
        for h, v in sorted(hours.items())
    ]


def activity_png(calls: Iterable[Mapping[str, Any]], *, title: str) -> str | None:
    """A ``data:image/png;base64,...`` URI, or ``None`` when no call has a time."""
    rows = hourly(calls)
    if not rows:
        return None
    fig = Figure(figsize=(8, 2.8), dpi=100)
    ax = fig.add_subplot()
    x = [r["hour"] for r in rows]
    width = 1 / 24 * 0.8
    ax.bar(x, [r["calls"] for r in rows], width=width, color="#9db4d3", label="calls out")
    ax.bar(x, [r["answered"] for r in rows], width=width, color="#2f5d9e", label="answered")
    ax.plot(x, [r["callees"] for r in rows], "o-", color="#c0392b", markersize=3, label="distinct callees")
    ax.set_ylabel("per hour")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    hours = max(1, int((x[-1] - x[0]).total_seconds() // 3600) + 1)
    ax.xaxis.set_major_locator(HourLocator(interval=max(1, hours // 8)))
    ax.xaxis.set_major_formatter(DateFormatter("%d %H:%M"))
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    # fixed margins: tight_layout would draw the figure twice
    fig.subplots_adjust(left=0.07, right=0.99, top=0.9, bottom=0.24)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
