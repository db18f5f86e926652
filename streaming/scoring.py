"""Vectorised scoring inside Spark with the registry's champion models.

The driver asks the registry for the champion's version at every micro-batch and, when the alias
has moved, broadcasts the new version's native text model and card. On the executors the booster
is built once per Python worker and version (``_WORKER_MODELS``), then ``mapInPandas`` scores
whole Arrow batches at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.sim import ENTITY, WINDOW_END
from models.registry import load_champion
from models.scoring import FRAUD_TYPE, SCORE, ModelCard, ScoringModel

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: (name, version) -> model, per Python worker process
_WORKER_MODELS: dict[tuple[str, int], ScoringModel] = {}


def _worker_model(name: str, version: int, payload: Any) -> ScoringModel:
    key = (name, version)
    if key not in _WORKER_MODELS:
        import lightgbm as lgb

        model_str, card_json = payload.value
        _WORKER_MODELS.clear()  # one version per model name and worker at a time
        _WORKER_MODELS[key] = ScoringModel(
            lgb.Booster(model_str=model_str), ModelCard.from_json(card_json), name=name, version=version
        )
    return _WORKER_MODELS[key]


@dataclass
class ChampionScorer:
    """Keeps the current champion of one registered model and scores DataFrames with it."""

    name: str
    tracking_uri: str
    registry_uri: str | None = None
    alias: str = "champion"
    model: ScoringModel | None = None
    _broadcast: Any = None

    def refresh(self, spark: SparkSession) -> ScoringModel:
        """Reload when the alias has moved (cheap when it has not)."""
        current = load_champion(
            self.name, self.tracking_uri, alias=self.alias, registry_uri=self.registry_uri, current=self.model
        )
        if current is not self.model or self._broadcast is None:
            if self._broadcast is not None:
                self._broadcast.unpersist()
            self.model = current
            self._broadcast = spark.sparkContext.broadcast((current.booster.model_to_string(), current.card.to_json()))
        return current

    def score(self, frame: DataFrame, *, keep: list[str]) -> DataFrame:
        """``keep`` columns plus ``score`` and ``fraud_type``; one output row per input row."""
        from pyspark.sql import types as T

        assert self.model is not None, "refresh() first"
        name, version, payload = self.name, int(self.model.version or 0), self._broadcast
        features = list(self.model.feature_names)
        in_schema = frame.select(*keep).schema
        schema = T.StructType(
            [*in_schema.fields, T.StructField(SCORE, T.DoubleType()), T.StructField(FRAUD_TYPE, T.StringType())]
        )

        def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            model = _worker_model(name, version, payload)
            for batch in batches:
                scored = model.score(batch)
                out = batch[keep].copy()
                out[SCORE] = scored[SCORE].to_numpy()
                out[FRAUD_TYPE] = scored[FRAUD_TYPE].to_numpy()
                yield out

        columns = list(dict.fromkeys([*keep, *features]))
        return frame.select(*columns).mapInPandas(run, schema=schema)


def first_decisive_rows(rows: pd.DataFrame, block: np.ndarray) -> pd.DataFrame:
    """One row per SIM of a micro-batch's scored rows: the earliest that scores above its block
    threshold (``block``, per row: the policy's ``block_above`` or the row's model threshold),
    when the evidence first sufficed; else the best-scoring one. A SIM that called all day gives
    one decision per micro-batch, not one per minute."""
    decisive = rows[SCORE].to_numpy(dtype=float) > np.asarray(block, dtype=float)
    rows = rows.assign(_decisive=decisive).sort_values([ENTITY, WINDOW_END], kind="stable")
    above = rows[rows["_decisive"]].groupby(ENTITY, sort=False).head(1)
    rest = rows[~rows[ENTITY].isin(above[ENTITY])]
    best = rest.sort_values([ENTITY, SCORE, WINDOW_END], ascending=[True, False, True], kind="stable")
    out = pd.concat([above, best.groupby(ENTITY, sort=False).head(1)])
    return out.drop(columns="_decisive").reset_index(drop=True)
