"""Batch scoring / backfill: ``simguard score`` with both champions over a folder of CDRs.

One row per flagged SIM (its highest-scoring window) or trunk call, with fraud type and reasons;
features come from the same cached feature job as training (``pipeline.modeling``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.sim import ENTITY, WINDOW_END, WINDOW_START
from models.errors import ModelError
from models.reasons import reason_text
from models.registry import load_champion
from models.scoring import FLAGGED, FRAUD_TYPE, SCORE, ScoringModel, history_starts
from models.tasks import SPAM_SIM, SPOOF_CALL, TASKS, task_spec
from pipeline.featurize import read_cdrs
from pipeline.modeling import Progress, cached_features, check_compatible, quiet, read_feature_tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pipeline.config import Settings

SCORE_COLUMNS = (
    "kind", "id", "number", "window_start", "window_end", "score", "fraud_type", "reasons",
    "model", "model_version",
)


def _with_reasons(model: ScoringModel, rows: pd.DataFrame, settings: Settings) -> list[str]:
    if rows.empty:
        return []
    reasons = model.reasons(rows, top_k=settings.models.reasons_top_k, feature_settings=settings.features)
    return [reason_text(r) for r in reasons]


def score_sims(
    model: ScoringModel,
    sim: pd.DataFrame,
    settings: Settings,
    *,
    first_record: pd.Timestamp | pd.DatetimeIndex | None = None,
) -> pd.DataFrame:
    """One row per flagged SIM: its highest-scoring window, fraud type and reasons. Rows whose
    window starts before the first record of their history (``first_record``: the minute, or
    where each run of the CDRs begins) lack part of it and are flagged above the model's cold
    threshold, as the stream does."""
    scored = pd.concat([sim, model.score(sim)], axis=1)
    if first_record is not None:
        scored[FLAGGED] = scored[SCORE].to_numpy() > model.thresholds(scored, first_record=first_record)
    flagged = scored[scored[FLAGGED]]
    top = flagged.sort_values([ENTITY, SCORE], ascending=[True, False], kind="stable").drop_duplicates(ENTITY)
    return pd.DataFrame(
        {
            "kind": "sim",
            "id": top[ENTITY].astype(str).to_numpy(),
            "number": top[ENTITY].astype(str).to_numpy(),
            "window_start": pd.to_datetime(top[WINDOW_START], utc=True).to_numpy(),
            "window_end": pd.to_datetime(top[WINDOW_END], utc=True).to_numpy(),
            "score": top[SCORE].to_numpy(),
            "fraud_type": top[FRAUD_TYPE].astype(str).to_numpy(),
            "reasons": _with_reasons(model, top, settings),
            "model": model.name or SPAM_SIM,
            "model_version": model.version if model.version is not None else -1,
        }
    )


def score_calls(model: ScoringModel, calls: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """One row per flagged trunk call."""
    scored = pd.concat([calls, model.score(calls)], axis=1)
    top = scored[scored[FLAGGED]]
    start = pd.to_datetime(top["start_time"], utc=True).to_numpy()
    return pd.DataFrame(
        {
            "kind": "call",
            "id": top["record_id"].astype(str).to_numpy(),
            "number": top["a_number"].astype(str).to_numpy(),
            "window_start": start,
            "window_end": start,
            "score": top[SCORE].to_numpy(),
            "fraud_type": top[FRAUD_TYPE].astype(str).to_numpy(),
            "reasons": _with_reasons(model, top, settings),
            "model": model.name or SPOOF_CALL,
            "model_version": model.version if model.version is not None else -1,
        }
    )


def score(
    spark: SparkSession, settings: Settings, *, cdrs: Path, out: Path, progress: Progress = quiet
) -> pd.DataFrame:
    """Batch scoring / backfill with both champions; writes Parquet or CSV by ``out``'s suffix."""
    suffix = Path(out).suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ModelError(f"--out must end in .parquet or .csv, not {Path(out).name!r}")
    uri, registry = settings.mlflow_tracking_uri, settings.mlflow.registry_uri
    alias = settings.models.champion_alias
    models = {
        t: load_champion(task_spec(t, settings.models, settings.features).registered_name, uri,
                         alias=alias, registry_uri=registry)
        for t in TASKS
    }
    for t, m in models.items():
        check_compatible(m, task_spec(t, settings.models, settings.features), settings)
    tables = cached_features(spark, settings, cdrs, progress=progress)
    progress("scoring: loading features")
    sim, calls = read_feature_tables(tables)
    progress(f"scoring: {len(sim):,} SIM windows and {len(calls):,} trunk calls")
    from pyspark.sql import functions as F

    # where each run of records begins (a gap of a window or more starts a new one), at the
    # minutes a stream that read these CDRs keeps
    sub = settings.features.sub_bucket_s
    minute = (F.floor(F.col("start_time").cast("double") / sub) * sub).alias("minute")
    minutes = [r[0] for r in read_cdrs(spark, cdrs).select(minute).distinct().collect()]
    starts = history_starts(np.array(minutes, dtype=np.float64), reach_s=settings.features.window_s)
    first_record = pd.DatetimeIndex(pd.to_datetime(starts, unit="s", utc=True)) if starts.size else None
    result = pd.concat(
        [
            score_sims(models[SPAM_SIM], sim, settings, first_record=first_record),
            score_calls(models[SPOOF_CALL], calls, settings),
        ],
        ignore_index=True,
    )
    result = result.sort_values(["kind", "score", "id"], ascending=[False, False, True], kind="stable")
    result = result.reset_index(drop=True)[list(SCORE_COLUMNS)]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        result.to_parquet(out, index=False)
    else:
        result.to_csv(out, index=False)
    return result
