"""The regulator's pages: the audit report's content, browsable and read-only.

Everything comes from the hash-chained log (:mod:`streaming.blocklist.audit_summary`, the same
summary ``simguard audit report`` writes), so a page shows what the report shows. A number
appears only as its keyed pseudonym (``audit.pseudonym_key``), the same on every page and in the
report; ``/regulator/numbers/{pseudonym}`` finds the number's history by computing the
pseudonyms of the numbers in the log, never by taking a number from the URL. Without a key the
overview still shows the counts, and the pages that name numbers answer 503.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console.actions import ConsoleStore
from console.security import REGULATORS, require
from streaming.blocklist.audit_summary import COUNT_KINDS, Names, report_data
from streaming.blocklist.pseudonym import Pseudonymizer
from streaming.blocklist.settings import AuditSettings

#: a pseudonym as :class:`Pseudonymizer` writes it
PSEUDONYM = re.compile(r"^[A-Za-z0-9_-]{1,16}-[0-9a-f]{16}$")
#: the overview's period when none is given
DEFAULT_DAYS = 30
NO_KEY = "no pseudonym key: set audit.pseudonym_key (SIMGUARD_AUDIT__PSEUDONYM_KEY) to see decisions and histories"


def _regulator(request: Request) -> None:
    require(request, REGULATORS)


class _Unnamed:
    """Stands in for the pseudonymizer when no key is set: the counts need no names."""

    key_id = "(none)"

    def __call__(self, number: str | None) -> str | None:
        return None if number is None else "(no pseudonym key)"


def _period(date_from: str | None, date_to: str | None) -> tuple[dt.date, dt.date]:
    try:
        last = dt.date.fromisoformat(date_to) if date_to else dt.datetime.now(dt.UTC).date()
        first = dt.date.fromisoformat(date_from) if date_from else last - dt.timedelta(days=DEFAULT_DAYS - 1)
    except ValueError:
        raise HTTPException(422, "dates are YYYY-MM-DD") from None
    if last < first:
        raise HTTPException(422, "the period ends before it starts")
    return first, last


def regulator_router(
    store: ConsoleStore, audit: AuditSettings | None, *, render: Callable[..., HTMLResponse], page_size: int
) -> APIRouter:
    """The ``/regulator`` pages; ``render(request, template, context)`` is the app's renderer."""
    router = APIRouter(prefix="/regulator", dependencies=[Depends(_regulator)])
    key = audit.pseudonym_key if audit else None
    named = bool(key and key.get_secret_value())
    pseudonyms = Pseudonymizer(key, audit.pseudonym_key_id) if named and audit else _Unnamed()
    retention_days = audit.retention_days if audit else AuditSettings().retention_days

    def report(first: dt.date, last: dt.date) -> dict[str, Any]:
        return report_data(store.engine, Names(pseudonyms), first=first, last=last,
                           retention_days=retention_days, key_id=pseudonyms.key_id)

    def needs_key() -> None:
        if not named:
            raise HTTPException(503, NO_KEY)

    def base(first: dt.date, last: dt.date) -> dict[str, Any]:
        return {"kinds": COUNT_KINDS, "first": first.isoformat(), "last": last.isoformat(), "named": named,
                "period": f"from={first.isoformat()}&to={last.isoformat()}"}

    @router.get("", response_class=HTMLResponse)
    def overview(
        request: Request,
        date_from: str | None = Query(None, alias="from", max_length=10),
        date_to: str | None = Query(None, alias="to", max_length=10),
    ) -> HTMLResponse:
        first, last = _period(date_from, date_to)
        data = report(first, last)
        return render(request, "regulator_overview.html", {**base(first, last), "r": data, "no_key": NO_KEY})

    @router.get("/decisions", response_class=HTMLResponse)
    def decisions(
        request: Request,
        date_from: str | None = Query(None, alias="from", max_length=10),
        date_to: str | None = Query(None, alias="to", max_length=10),
        page: int = Query(1, ge=1, le=1_000_000),
    ) -> HTMLResponse:
        needs_key()
        first, last = _period(date_from, date_to)
        rows = report(first, last)["decisions"]
        pages = max(1, -(-len(rows) // page_size))
        shown = rows[(page - 1) * page_size : page * page_size]
        return render(request, "regulator_decisions.html",
                      {**base(first, last), "rows": shown, "total": len(rows), "page": page, "pages": pages})

    @router.get("/numbers", response_class=HTMLResponse)
    def find_number(request: Request, pseudonym: str = Query(..., max_length=40)) -> Response:
        """The look-up form: a pseudonym copied from the report."""
        return RedirectResponse(f"/regulator/numbers/{quote(pseudonym.strip())}", status_code=303)

    @router.get("/numbers/{pseudonym}", response_class=HTMLResponse)
    def number_history(request: Request, pseudonym: str) -> HTMLResponse:
        needs_key()
        if not PSEUDONYM.match(pseudonym):
            raise HTTPException(404, "not a pseudonym (key id, a dash, 16 hex digits)")
        today = dt.datetime.now(dt.UTC).date()
        history = report(today, today)["number_history"].get(pseudonym)
        if not history:
            raise HTTPException(404, f"no record in the audit log names {pseudonym}")
        return render(request, "regulator_number.html", {"pseudonym": pseudonym, "history": history})

    @router.get("/dossiers/{registered_name}/{version}", response_class=HTMLResponse)
    def dossier(request: Request, registered_name: str, version: int) -> HTMLResponse:
        from streaming.blocklist.dossiers import load_dossiers

        found = load_dossiers(store.engine).get((registered_name, version))
        if found is None:
            raise HTTPException(404, f"no dossier stored for {registered_name} v{version}")
        return render(request, "regulator_dossier.html", {"d": Names(pseudonyms).text(found)})

    return router
