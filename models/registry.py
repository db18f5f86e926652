"""MLflow: log every version with its evaluation, register it, move ``champion`` on improvement,
and load a version back for scoring (batch here, streaming later).

Each version stores: the native LightGBM text model (``mlflow.lightgbm.log_model`` of a
``Booster``: ``model.lgb``, no pickle) with a signature and an input example; the model card
(:class:`~models.scoring.ModelCard`: task, classes, feature names, threshold, target FPR, feature
settings) both in the MLmodel metadata and as ``simguard_model.json``; params; flattened
metrics; plots; the evaluation report; the training-data fingerprint and the code version; and
the validation population's feature quantiles (:class:`~models.quantiles.FeatureQuantiles`: in
the MLmodel metadata, so they travel with the version, and as ``feature_quantiles.json``).

The streaming scorer polls :func:`champion_version` (cheap: one registry call) and calls
:func:`load_champion` with its current model, which returns the same object while the alias has
not moved and the new champion once it has.

>>> model = load_champion("simguard-spam-sim", "sqlite:///.simguard/mlflow/mlflow.db")  # doctest: +SKIP
>>> model.version, model.threshold  # doctest: +SKIP
(3, 0.91)
>>> model.score(feature_rows)  # score, fraud_type, flagged  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.errors import ModelError
from models.quantiles import FeatureQuantiles
from models.scoring import ModelCard, ScoringModel

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow.tracking import MlflowClient

CARD_FILE = "simguard_model.json"
REPORT_FILE = "evaluation.json"
CARD_METADATA_KEY = "simguard_model_card"
QUANTILES_FILE = "feature_quantiles.json"
QUANTILES_METADATA_KEY = "simguard_feature_quantiles"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


# -- provenance ----------------------------------------------------------------------------------


def code_version() -> dict[str, str]:
    """The git commit and a dirty flag when run from a checkout, else the package version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("simguard")
    except PackageNotFoundError:
        package = "unknown"
    info = {"package_version": package}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PACKAGE_ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return info
    info.update(git_commit=commit, git_dirty=str(bool(status)).lower())
    return info


def data_fingerprint(frames: Sequence[pd.DataFrame], files: Sequence[Path]) -> str:
    """sha256 over the feature tables' contents (row order included: callers sort) and files."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(",".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    for path in files:
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


# -- the store -----------------------------------------------------------------------------------


def _prepare_uri(tracking_uri: str) -> None:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def mlflow_store(tracking_uri: str, registry_uri: str | None = None) -> Iterator[MlflowClient]:
    """Point MLflow at the store for the duration of a block (and restore the previous one)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    _prepare_uri(tracking_uri)
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)
    try:
        yield MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


@contextmanager
def registry_errors(tracking_uri: str) -> Iterator[None]:
    """Turn MLflow's exceptions into one-line ``ModelError`` messages for the CLI."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        first = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else type(exc).__name__
        raise ModelError(f"MLflow store {tracking_uri}: {first}") from None


def ensure_experiment(client: MlflowClient, name: str, *, artifact_root: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


# -- logging a version ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedVersion:
    name: str
    version: int
    run_id: str
    #: the champion after this call, and whether this version became it
    champion_version: int | None
    promoted: bool


def log_version(
    model: ScoringModel,
    *,
    registered_name: str,
    tracking_uri: str,
    registry_uri: str | None,
    experiment: str,
    artifact_root: str | None,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    report: Mapping[str, Any],
    figures: Mapping[str, Figure],
    tags: Mapping[str, str],
    input_example: pd.DataFrame,
    promote: bool,
    alias: str,
) -> LoggedVersion:
    """Log one run with the model, register it, and move ``alias`` to it when ``promote``."""
    import lightgbm as lgb
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.models import infer_signature

    from models.matrix import feature_matrix

    example = pd.DataFrame(feature_matrix(input_example, model.feature_names), columns=list(model.feature_names))
    signature = infer_signature(example, model.proba(example))
    with mlflow_store(tracking_uri, registry_uri) as client:
        experiment_id = ensure_experiment(client, experiment, artifact_root=artifact_root)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model.card.task}") as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(dict(metrics))
            mlflow.set_tags(dict(tags))
            mlflow.log_text(model.card.to_json(), CARD_FILE)
            mlflow.log_text(json.dumps(report, indent=2, sort_keys=True, default=_json_default), REPORT_FILE)
            metadata = {CARD_METADATA_KEY: model.card.to_json()}
            if model.quantiles is not None:
                metadata[QUANTILES_METADATA_KEY] = model.quantiles.to_json()
                mlflow.log_text(model.quantiles.to_json(), QUANTILES_FILE)
            for file_name, fig in figures.items():
                mlflow.log_figure(fig, f"plots/{file_name}")
                plt.close(fig)
            info = mlflow.lightgbm.log_model(
                model.booster,
                name="model",
                signature=signature,
                input_example=example,
                # pinned: inferring requirements starts a subprocess and imports the world
                pip_requirements=[f"lightgbm=={lgb.__version__}"],
                metadata=metadata,
                registered_model_name=registered_name,
            )
            version = int(info.registered_model_version)
        cold = {} if model.card.cold_threshold is None else {"cold_threshold": repr(model.card.cold_threshold)}
        for key, value in {**tags, "task": model.card.task, "threshold": repr(model.threshold), **cold,
                           "target_fpr": repr(model.card.target_fpr), "run_id": run.info.run_id}.items():
            client.set_model_version_tag(registered_name, str(version), key, str(value))
        if promote:
            client.set_registered_model_alias(registered_name, alias, str(version))
        champion = _alias_version(client, registered_name, alias)
    return LoggedVersion(
        name=registered_name,
        version=version,
        run_id=run.info.run_id,
        champion_version=champion,
        promoted=promote,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- loading -------------------------------------------------------------------------------------


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_version(
    name: str, tracking_uri: str, *, alias: str = "champion", registry_uri: str | None = None
) -> int | None:
    """The version the alias points at now, or ``None`` (no such model or alias)."""
    with mlflow_store(tracking_uri, registry_uri) as client:
        return _alias_version(client, name, alias)


def load_version(
    name: str, tracking_uri: str, *, version: int, registry_uri: str | None = None
) -> ScoringModel:
    """One registered version as a :class:`ScoringModel` (native booster + card)."""
    import lightgbm as lgb
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    with mlflow_store(tracking_uri, registry_uri) as client, tempfile.TemporaryDirectory() as tmp:
        try:
            mv = client.get_model_version(name, str(version))
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
        except MlflowException as exc:
            raise ModelError(f"cannot load model {name} version {version} from {tracking_uri}: {exc.message}") from None
        meta = Model.load(str(local / "MLmodel")).metadata or {}
        if CARD_METADATA_KEY not in meta:
            raise ModelError(f"model {name} version {version} has no SIMGuard model card: not logged by simguard train")
        card = ModelCard.from_json(meta[CARD_METADATA_KEY])
        # versions registered before quantiles were kept have none: their reasons carry no percentile
        quantiles = FeatureQuantiles.from_json(meta[QUANTILES_METADATA_KEY]) if QUANTILES_METADATA_KEY in meta else None
        booster = lgb.Booster(model_file=str(local / "model.lgb"))
    return ScoringModel(booster, card, name=name, version=int(version), run_id=mv.run_id, quantiles=quantiles)


def load_champion(
    name: str,
    tracking_uri: str,
    *,
    alias: str = "champion",
    registry_uri: str | None = None,
    current: ScoringModel | None = None,
) -> ScoringModel:
    """The version the alias points at; ``current`` is returned unchanged if it still is that one.

    Raises ``ModelError`` when there is no champion yet (run ``simguard train``).
    """
    version = champion_version(name, tracking_uri, alias=alias, registry_uri=registry_uri)
    if version is None:
        raise ModelError(f"no '{alias}' version of {name} in {tracking_uri}: run `simguard train` first")
    if current is not None and current.name == name and current.version == version:
        return current
    return load_version(name, tracking_uri, version=version, registry_uri=registry_uri)


def should_promote(new_key: tuple[float, ...], champion_key: tuple[float, ...] | None) -> bool:
    """Move the alias only on a strict improvement (ties keep the current champion).

    >>> should_promote((0.9, 0.5), None), should_promote((0.9, 0.5), (0.9, 0.5))
    (True, False)
    """
    return champion_key is None or tuple(new_key) > tuple(champion_key)


def log_dossier(run_id: str, *, tracking_uri: str, registry_uri: str | None, json_text: str, markdown: str) -> None:
    """Attach a version's dossier (``dossier.json``, ``dossier.md``) to its run."""
    with mlflow_store(tracking_uri, registry_uri) as client:
        client.log_text(run_id, json_text, "dossier.json")
        client.log_text(run_id, markdown, "dossier.md")
