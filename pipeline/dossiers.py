"""Writing a registered version's dossier: MLflow artifact, database row, audit records.

``simguard train`` calls :func:`record_registration` after each ``log_version``: the dossier goes
to the version's run (``dossier.json``, ``dossier.md``) and to ``model_dossiers`` with a
``model_registered`` audit record, and a moved champion alias is logged as ``champion_alias``.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.dossier import build_dossier, data_summary, to_markdown
from models.reasons import sentence_templates
from models.registry import LoggedVersion, log_dossier

if TYPE_CHECKING:
    from models.scoring import ScoringModel
    from models.split import Split
    from models.tasks import TaskSpec
    from pipeline.config import Settings

ALLOWLIST_SOURCES = (
    "numbering plan: emergency numbers and short codes",
    "registered business numbers (blocklist.registered_businesses)",
    "numbers analysts cleared",
)


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user} (simguard train)"


def feature_lines(names: Sequence[str], settings: Settings) -> dict[str, str]:
    """One line per feature: the reason sentence it gives (shown at an example value of 1)."""
    templates = sentence_templates(settings.features)
    out = {}
    for name in names:
        template = templates.get(name)
        try:
            text = f"as a reason: \"{template(1.0, {})}\" (at a value of 1)" if template else name.replace("_", " ")
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            text = name.replace("_", " ")
        out[name] = text
    return out


def data_source(labels: Path) -> str:
    from pipeline.simulate.writer import MANIFEST

    folder = Path(labels)
    simulated = any((p / MANIFEST).exists() for p in (folder, folder.parent))
    return "simulated (simguard simulate)" if simulated else "operator data"


def record_registration(
    settings: Settings,
    *,
    spec: TaskSpec,
    model: ScoringModel,
    split: Split,
    report: Mapping[str, Any],
    logged: LoggedVersion,
    previous_champion: int | None,
    source: str,
    label_sources: Sequence[str],
) -> dict[str, Any]:
    """Build, log and store the dossier of ``logged``; log the alias move when it moved."""
    from streaming.blocklist.db import make_engine
    from streaming.blocklist.dossiers import champion_history, record_champion_move, store_dossier
    from streaming.blocklist.migrate import upgrade

    who = actor()
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        if logged.promoted and logged.champion_version == logged.version and previous_champion != logged.version:
            record_champion_move(engine, registered_name=logged.name, alias=settings.models.champion_alias,
                                 version=logged.version, previous=previous_champion, actor=who)
        dossier = build_dossier(
            registered_name=logged.name,
            version=logged.version,
            task=spec.task,
            report=report,
            data=data_summary({"train": split.train, "validation": split.validation, "test": split.test},
                              source=source, label_sources=label_sources, boundaries=report.get("split", {})),
            features=feature_lines(spec.feature_names, settings),
            threshold=model.threshold,
            cold_threshold=model.card.cold_threshold,
            policy=settings.policy.model_dump(mode="json"),
            allowlist_sources=ALLOWLIST_SOURCES,
            champion_history=champion_history(engine, logged.name),
            provenance={"run_id": logged.run_id, "promoted": logged.promoted},
        )
        markdown = to_markdown(dossier)
        log_dossier(logged.run_id, tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow.registry_uri,
                    json_text=json.dumps(dossier, indent=2, sort_keys=True, default=str), markdown=markdown)
        store_dossier(engine, dossier, markdown, actor=who)
    finally:
        engine.dispose()
    return dossier
