"""Model dossiers in the database, and the registry events of the audit log.

A dossier row is written with a ``model_registered`` audit record carrying its content hash, in
one transaction; a champion alias move is a ``champion_alias`` record. Both are written by
``simguard train`` through :func:`store_dossier` and :func:`record_champion_move`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from streaming.blocklist import audit
from streaming.blocklist.db import as_utc, utcnow, writer
from streaming.blocklist.models import AuditRecord, ModelDossier


def store_dossier(engine: sa.Engine, content: dict[str, Any], markdown: str, *, actor: str,
                  at: dt.datetime | None = None) -> str:
    """Save a version's dossier (replacing an earlier one of the same version) and log it."""
    at = as_utc(at or utcnow())
    digest = hashlib.sha256(audit.canonical(content)).hexdigest()
    name, version = content["registered_name"], int(content["version"])
    with Session(writer(engine), expire_on_commit=False) as session, session.begin():
        audit.lock(session)
        row = session.get(ModelDossier, (name, version))
        if row is None:
            row = ModelDossier(registered_name=name, version=version)
            session.add(row)
        row.content, row.markdown, row.content_hash, row.created_at = content, markdown, digest, at
        audit.append(
            session,
            kind="model_registered",
            actor=actor,
            content={"registered_name": name, "version": version, "dossier_sha256": digest,
                     "targets": [[t["target"], t["result"]] for t in content.get("targets", [])]},
            at=at,
        )
    return digest


def record_champion_move(engine: sa.Engine, *, registered_name: str, alias: str, version: int,
                         previous: int | None, actor: str, at: dt.datetime | None = None) -> str:
    """Log that ``alias`` of ``registered_name`` now points at ``version``."""
    return audit.record_event(
        engine, kind="champion_alias", actor=actor,
        content={"registered_name": registered_name, "alias": alias, "version": int(version),
                 "previous_version": previous},
        at=at,
    )


def champion_history(engine: sa.Engine, registered_name: str | None = None) -> list[dict[str, Any]]:
    """Every logged alias move (of one model, or all), oldest first."""
    with Session(engine) as session, session.begin():
        rows = session.scalars(
            sa.select(AuditRecord).where(AuditRecord.kind == "champion_alias").order_by(AuditRecord.seq)
        ).all()
        return [
            {"at": r.at.isoformat(), "actor": r.actor, "seq": r.seq, **r.content}
            for r in rows
            if registered_name is None or r.content.get("registered_name") == registered_name
        ]


def load_dossiers(engine: sa.Engine) -> dict[tuple[str, int], dict[str, Any]]:
    with Session(engine) as session, session.begin():
        return {(r.registered_name, r.version): dict(r.content) for r in session.scalars(sa.select(ModelDossier))}
