"""The regulator's report (``simguard audit report``): the log's summary
(:mod:`streaming.blocklist.audit_summary`, shared with the console's regulator pages), the PR and
ROC plots of the versions in force from MLflow, and one self-contained HTML file."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import Settings


def build_audit_report(settings: Settings, *, first: dt.date, last: dt.date) -> dict[str, Any]:
    from streaming.blocklist.audit_summary import Names, report_data
    from streaming.blocklist.db import make_engine
    from streaming.blocklist.migrate import upgrade
    from streaming.blocklist.pseudonym import Pseudonymizer

    names = Names(Pseudonymizer(settings.audit.pseudonym_key, settings.audit.pseudonym_key_id))
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        return report_data(engine, names, first=first, last=last, retention_days=settings.audit.retention_days,
                           key_id=settings.audit.pseudonym_key_id)
    finally:
        engine.dispose()


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
