"""Batch composition for the models: Spark feature job -> pandas -> ``models`` -> MLflow.

``train`` and ``evaluate`` are what the CLI commands call (``score``: ``pipeline.batch_score``).
Feature tables are built once per input and feature settings and cached under
``<home>/features/<key>`` (the key hashes the CDR files' names, sizes and modification times,
the feature settings and the numbering plan), so ``simguard evaluate`` after ``simguard train``
on the same CDRs reads the same tables.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.errors import SchemaError
from features.numbering import DEFAULT_PLAN_PATH
from features.sim import ENTITY, WINDOW_END, WINDOW_START
from models.dataset import ALLOWLISTED, CALL_LABELS_FILE, SIM_LABELS_FILE, UNIT, read_labels
from models.errors import ModelError
from models.evaluate import flatten
from models.extra_labels import ExtraLabelCounts, add_extra_labels, read_extra_labels, without_labelled
from models.registry import (
    champion_version,
    code_version,
    data_fingerprint,
    load_champion,
    load_version,
    log_version,
    should_promote,
)
from models.scoring import ScoringModel, reaches_before
from models.split import Boundaries, Split, scored_at
from models.tasks import (
    SPAM_SIM,
    SPOOF_CALL,
    TASKS,
    Evaluation,
    TaskSpec,
    boundaries_for,
    evaluate_model,
    fit_task,
    split_frame,
    summary_line,
    task_spec,
    validation_key,
)
from pipeline.dossiers import data_source, record_registration
from pipeline.featurize import CALL_TABLE, SIM_TABLE, FeatureTables, build_features

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pipeline.config import Settings

Progress = Callable[[str], None]
_COMPLETE = "_SIMGUARD_COMPLETE"


def quiet(_: str) -> None:
    return None


# -- features ------------------------------------------------------------------------------------


def features_key(cdr_dir: Path, settings: Settings) -> str:
    """Identifies a feature build: the CDR files (name, size, mtime), feature settings, plan."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(cdr_dir).rglob("*.parquet"))
    if not files:
        raise SchemaError(f"no CDR Parquet files under {cdr_dir}: run `simguard simulate` or `simguard ingest`")
    for p in files:
        st = p.stat()
        digest.update(f"{p.relative_to(cdr_dir)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    digest.update(settings.features.model_dump_json().encode())
    split = settings.models.split
    digest.update(f"full_days={split.validation_days + split.test_days}".encode())
    digest.update(DEFAULT_PLAN_PATH.read_bytes())
    return digest.hexdigest()[:20]


def cached_features(
    spark: SparkSession,
    settings: Settings,
    cdr_dir: Path,
    *,
    between: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    progress: Progress = quiet,
) -> FeatureTables:
    """Feature tables for ``cdr_dir``, built with Spark unless this exact build is cached;
    ``between`` (start, end): from the CDRs in ``[start, end)`` alone, every scoring point."""
    out = settings.home_abs / "features" / features_key(Path(cdr_dir), settings)
    if between is not None:
        out = out / f"alone-{between[0]:%Y%m%dT%H%M}-{between[1]:%Y%m%dT%H%M}"
    tables = FeatureTables(sim=out / SIM_TABLE, calls=out / CALL_TABLE)
    if (out / _COMPLETE).exists():
        progress(f"features: cached {out}")
        return tables
    if between is None:
        progress("features: building per-SIM windows and per-call rows with Spark")
    else:
        progress(f"features: building the rows of {between[0]} to {between[1]} from their CDRs alone")
    if out.exists():
        shutil.rmtree(out)
    # thresholds are chosen on validation and checked on test: both must hold every point the
    # stream scores, or a SIM would get fewer chances to score high there than live
    split = settings.models.split
    tables = build_features(
        spark,
        cdr_dir,
        features=settings.features,
        out_dir=out,
        full_days=None if between is not None else split.validation_days + split.test_days,
        between=None if between is None else (between[0].to_pydatetime(), between[1].to_pydatetime()),
    )
    (out / _COMPLETE).write_text(json.dumps({"cdrs": str(Path(cdr_dir).resolve())}))
    return tables


def read_feature_tables(tables: FeatureTables) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables in pandas, sorted by key so that row order never depends on Spark."""
    sim = pd.read_parquet(tables.sim)
    calls = pd.read_parquet(tables.calls)
    sim = sim.sort_values([ENTITY, WINDOW_START, WINDOW_END], kind="stable").reset_index(drop=True)
    calls = calls.sort_values("record_id", kind="stable").reset_index(drop=True)
    return sim, calls


# -- data for both tasks -------------------------------------------------------------------------


def registered_businesses_file(settings: Settings, labels: Path) -> Path | None:
    """The registered-business list the policy uses (``blocklist.registered_businesses``), or,
    when none is configured, the one beside the labels (``simguard simulate`` writes it)."""
    configured = settings.blocklist.registered_businesses
    if configured is not None:
        return Path(configured)
    beside = Path(labels) / "registered_businesses.parquet"
    return beside if beside.exists() else None


def allowlisted_numbers(settings: Settings, labels: Path, numbers) -> set[str]:
    """Which of ``numbers`` the streaming policy would never block: emergency and short codes
    from the numbering plan and registered business numbers (the policy's own function)."""
    from features.numbering import load_numbering_plan
    from streaming.blocklist.numbers_file import read_numbers
    from streaming.policy import allowlist_reason

    path = registered_businesses_file(settings, labels)
    sources = dict.fromkeys(read_numbers(path), "registered_business") if path is not None else {}
    plan = load_numbering_plan()
    return {n for n in numbers if allowlist_reason(str(n), plan=plan, sources=sources) is not None}



def label_rows(
    settings: Settings,
    labels: Path,
    sim: pd.DataFrame,
    calls: pd.DataFrame,
    *,
    sim_labels: pd.DataFrame,
    call_labels: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    """Both tasks' feature rows with their labels; SIM rows also say whether the policy's
    allowlist covers the number (``labels``: the folder beside which the registered-business list
    may lie)."""
    specs = {t: task_spec(t, settings.models, settings.features) for t in TASKS}
    allowed = allowlisted_numbers(settings, labels, sim[ENTITY].unique())
    return {
        SPAM_SIM: specs[SPAM_SIM].label(sim, sim_labels).assign(**{ALLOWLISTED: lambda f: f[UNIT].isin(allowed)}),
        SPOOF_CALL: specs[SPOOF_CALL].label(calls, call_labels),
    }


def rows_alone(
    spark: SparkSession,
    settings: Settings,
    cdrs: Path,
    labels: Path,
    between: tuple[pd.Timestamp, pd.Timestamp],
    *,
    sim_labels: pd.DataFrame,
    call_labels: pd.DataFrame,
    progress: Progress = quiet,
) -> dict[str, pd.DataFrame]:
    """Both tasks' labelled rows scored in ``between`` (start, end), computed from the CDRs in it
    alone: a SIM's first calls have no day before, as in a stream started on an empty state."""
    tables = cached_features(spark, settings, cdrs, between=between, progress=progress)
    sim, calls = read_feature_tables(tables)
    rows = label_rows(settings, labels, sim, calls, sim_labels=sim_labels, call_labels=call_labels)
    start, end = between

    def scored_in(frame: pd.DataFrame) -> pd.DataFrame:
        at = scored_at(frame)
        return frame[(at >= start) & (at < end)].reset_index(drop=True)

    return {task: scored_in(frame) for task, frame in rows.items()}


@dataclass(frozen=True)
class TaskData:
    spec: TaskSpec
    split: Split
    #: analysts' labels moved into ``split.train`` (``--extra-labels``)
    extra: ExtraLabelCounts = field(default_factory=ExtraLabelCounts)
    #: the validation days' rows computed from their own CDRs alone (spam SIMs): what a stream
    #: started without the day before scores, where the cold threshold is chosen
    cold_validation: pd.DataFrame | None = None


@dataclass(frozen=True)
class Prepared:
    tasks: dict[str, TaskData]
    boundaries: Boundaries
    fingerprint: str
    features_dir: Path


def prepare(
    spark: SparkSession,
    settings: Settings,
    *,
    cdrs: Path,
    labels: Path,
    extra_labels: Path | None = None,
    progress: Progress = quiet,
) -> Prepared:
    """Features, labels and the time split for both tasks; with ``extra_labels`` (the table
    ``simguard labels export`` writes) the analysts' labels join the training rows."""
    sim_labels, call_labels = read_labels(labels)
    extra = read_extra_labels(extra_labels) if extra_labels is not None else None
    tables = cached_features(spark, settings, cdrs, progress=progress)
    progress("features: loading into pandas")
    sim, calls = read_feature_tables(tables)
    label_files = [Path(labels) / SIM_LABELS_FILE, Path(labels) / CALL_LABELS_FILE]
    fingerprint = data_fingerprint([sim, calls], [*label_files, *([Path(extra_labels)] if extra_labels else [])])
    specs = {t: task_spec(t, settings.models, settings.features) for t in TASKS}
    labelled = label_rows(settings, labels, sim, calls, sim_labels=sim_labels, call_labels=call_labels)
    boundaries = boundaries_for(labelled[SPAM_SIM], settings.models)
    tasks = {t: TaskData(specs[t], split_frame(labelled[t], boundaries)) for t in TASKS}
    # the validation days from their own CDRs alone: where the spam-SIM cold threshold is chosen,
    # on the rows a stream started at their first record judges cold (windows reaching before it)
    start = boundaries.validation_start
    cold = rows_alone(spark, settings, cdrs, labels, (start, boundaries.test_start),
                      sim_labels=sim_labels, call_labels=call_labels, progress=progress)[SPAM_SIM]
    cold = cold[reaches_before(cold, start)].reset_index(drop=True)
    tasks[SPAM_SIM] = replace(tasks[SPAM_SIM], cold_validation=cold)
    if extra is not None:
        for t, td in tasks.items():
            split, counts = add_extra_labels(
                td.split, extra, task=t, classes=td.spec.classes, feature_names=td.spec.feature_names
            )
            progress(f"{t}: {counts.used} analysts' labels in training ({counts.relabelled} relabelled, "
                     f"{counts.moved} moved from validation/test, {counts.added} added from stored features)")
            tasks[t] = replace(td, split=split, extra=counts)
            if td.cold_validation is not None:
                tasks[t] = replace(tasks[t], cold_validation=without_labelled(
                    td.cold_validation, extra, task=t, classes=td.spec.classes))
    return Prepared(tasks=tasks, boundaries=boundaries, fingerprint=fingerprint, features_dir=tables.sim.parent)


# -- train ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOutcome:
    task: str
    registered_name: str
    version: int
    promoted: bool
    champion_version: int | None
    #: validation (recall at target FPR, PR-AUC) of the new version and of the previous champion
    validation_key: tuple[float, float]
    previous_champion_key: tuple[float, float] | None
    previous_champion_version: int | None
    summary: dict[str, Any]
    extra_labels: ExtraLabelCounts = field(default_factory=ExtraLabelCounts)


def _champion_key(
    spec: TaskSpec, settings: Settings, validation: pd.DataFrame
) -> tuple[int | None, tuple[float, float] | None]:
    """The current champion scored on the NEW validation data (``None`` if none or unusable)."""
    registry = settings.mlflow.registry_uri
    current = champion_version(
        spec.registered_name, settings.mlflow_tracking_uri, alias=settings.models.champion_alias,
        registry_uri=registry,
    )
    if current is None:
        return None, None
    champion = load_version(spec.registered_name, settings.mlflow_tracking_uri, version=current, registry_uri=registry)
    if not _compatible(champion, spec, settings):
        # features were redefined: the old champion cannot score today's rows, so any new one wins
        return current, None
    return current, validation_key(spec, champion, validation)


def train(
    spark: SparkSession,
    settings: Settings,
    *,
    cdrs: Path,
    labels: Path,
    extra_labels: Path | None = None,
    seed: int | None = None,
    progress: Progress = quiet,
) -> list[TrainOutcome]:
    """Train, evaluate, log and register both models; move ``champion`` on improvement only."""
    from models.plots import evaluation_figures

    seed = settings.models.seed if seed is None else seed
    data = prepare(spark, settings, cdrs=cdrs, labels=labels, extra_labels=extra_labels, progress=progress)
    versions = code_version()
    outcomes = []
    for task, td in data.tasks.items():
        spec, split, extra = td.spec, td.split, td.extra
        progress(f"{task}: training on {len(split.train):,} rows (validation {len(split.validation):,})")
        model = fit_task(
            spec, split, settings=settings.models, features=settings.features, seed=seed,
            cold_validation=td.cold_validation,
        )
        progress(f"{task}: evaluating on {len(split.test):,} test rows")
        evaluation = evaluate_model(
            spec, model, split, settings=settings.models, features=settings.features, boundaries=data.boundaries,
            cold_validation=td.cold_validation,
        )
        new_key = validation_key(spec, model, split.validation)
        progress(f"{task}: comparing with the champion on this validation split")
        previous, previous_key = _champion_key(spec, settings, split.validation)
        promote = should_promote(new_key, previous_key)
        report = {
            **evaluation.report,
            "champion_comparison": {
                "new_validation_key": list(new_key),
                "champion_version": previous,
                "champion_validation_key": list(previous_key) if previous_key else None,
                "promoted": promote,
            },
        }
        progress(f"{task}: logging to MLflow")
        figures = evaluation_figures(
            model, report, model_units=evaluation.model_units, baseline_units=evaluation.baseline_units
        )
        params = {
            "task": task,
            "seed": seed,
            "num_threads": settings.models.num_threads,
            "best_iteration": model.card.best_iteration,
            "threshold": model.threshold,
            "cold_threshold": model.card.cold_threshold if model.card.cold_threshold is not None else "none",
            "target_fpr": spec.target_fpr,
            "n_features": len(spec.feature_names),
            # rules that flag a row outright in this version (models.scoring)
            "certain_features": ",".join(model.card.certain_features) or "none",
            "extra_labels": str(Path(extra_labels).resolve()) if extra_labels else "none",
            "extra_labels_used": extra.used,
            **{f"booster.{k}": v for k, v in spec.booster.model_dump().items()},
            **{f"split.{k}": v for k, v in report["split"].items()},
            **{f"features.{k}": v for k, v in settings.features.model_dump().items()},
        }
        metrics = {
            **flatten(report["validation"], "validation."),
            **flatten(report.get("cold_validation", {}), "cold_validation."),
            **flatten(report["test"], "test."),
            **flatten(report["test_without_allowlist"], "test_without_allowlist."),
            **flatten(report["baseline"], "baseline."),
            **flatten(report["comparison"], "comparison."),
            "test.brier": report["calibration"]["brier"],
            "champion.new_validation_recall_at_fpr": new_key[0],
            "champion.new_validation_pr_auc": new_key[1],
            **{f"extra_labels.{k}": float(v) for k, v in asdict(extra).items()},
        }
        tags = {
            "data_fingerprint": data.fingerprint,
            "cdrs": str(Path(cdrs).resolve()),
            "labels": str(Path(labels).resolve()),
            **versions,
        }
        logged = log_version(
            model,
            registered_name=spec.registered_name,
            tracking_uri=settings.mlflow_tracking_uri,
            registry_uri=settings.mlflow.registry_uri,
            experiment=settings.mlflow.experiment,
            artifact_root=None if settings.mlflow.tracking_uri else settings.mlflow_artifact_root,
            params=params,
            metrics=metrics,
            report=report,
            figures=figures,
            tags=tags,
            input_example=split.validation.head(5),
            promote=promote,
            alias=settings.models.champion_alias,
        )
        progress(f"{task}: writing the dossier of version {logged.version}")
        record_registration(
            settings, spec=spec, model=model, split=split, report=report, logged=logged,
            previous_champion=previous, source=data_source(labels),
            label_sources=[
                f"{'SIM' if task == SPAM_SIM else 'call'} labels "
                f"({SIM_LABELS_FILE if task == SPAM_SIM else CALL_LABELS_FILE} in {Path(labels).name}/)",
                _analyst_source(extra, extra_labels),
            ],
        )
        outcomes.append(
            TrainOutcome(
                task=task,
                registered_name=spec.registered_name,
                version=logged.version,
                promoted=logged.promoted,
                champion_version=logged.champion_version,
                validation_key=new_key,
                previous_champion_key=previous_key,
                previous_champion_version=previous,
                summary=summary_line(report, version=logged.version),
                extra_labels=extra,
            )
        )
    return outcomes


def _analyst_source(extra: ExtraLabelCounts, path: Path | None) -> str:
    if path is None:
        return "analysts' confirmations and overturns: not given (simguard train --extra-labels)"
    return (
        f"analysts' confirmations and overturns ({Path(path).name}): {extra.used} training rows "
        f"({extra.relabelled} relabelled, {extra.moved} moved from validation/test, {extra.added} added "
        "from the feature values stored with the decisions)"
    )


# -- evaluate ------------------------------------------------------------------------------------


def _resolve(spec: TaskSpec, settings: Settings, which: str) -> ScoringModel:
    uri, registry = settings.mlflow_tracking_uri, settings.mlflow.registry_uri
    if which == settings.models.champion_alias or which == "champion":
        return load_champion(spec.registered_name, uri, alias=settings.models.champion_alias, registry_uri=registry)
    try:
        version = int(which)
    except ValueError:
        raise ModelError(f"--model-version must be 'champion' or a version number, not {which!r}") from None
    return load_version(spec.registered_name, uri, version=version, registry_uri=registry)


def _compatible(model: ScoringModel, spec: TaskSpec, settings: Settings) -> bool:
    """Same features, computed the same way (window, thresholds), and the same classes."""
    return (
        model.feature_names == spec.feature_names
        and model.classes == spec.classes
        and model.card.feature_settings == settings.features.model_dump()
    )


def check_compatible(model: ScoringModel, spec: TaskSpec, settings: Settings) -> None:
    if not _compatible(model, spec, settings):
        raise ModelError(
            f"{model.name} version {model.version} was trained on other features than the current "
            "feature settings define: evaluate it with the config it was trained with, or retrain"
        )


def evaluate(
    spark: SparkSession,
    settings: Settings,
    *,
    cdrs: Path,
    labels: Path,
    model_version: str = "champion",
    progress: Progress = quiet,
) -> list[tuple[ScoringModel, Evaluation]]:
    """A registered version of each model beside the rules baseline, on the test split."""
    models = {}
    for task in TASKS:
        # the registry first: a missing version fails before minutes of feature building
        progress(f"{task}: loading {model_version} from the registry")
        spec = task_spec(task, settings.models, settings.features)
        models[task] = _resolve(spec, settings, model_version)
        check_compatible(models[task], spec, settings)
    data = prepare(spark, settings, cdrs=cdrs, labels=labels, progress=progress)
    out = []
    for task, td in data.tasks.items():
        model = models[task]
        progress(f"{task}: evaluating version {model.version}")
        out.append(
            (
                model,
                evaluate_model(
                    td.spec, model, td.split, settings=settings.models, features=settings.features,
                    boundaries=data.boundaries, cold_validation=td.cold_validation,
                ),
            )
        )
    return out
