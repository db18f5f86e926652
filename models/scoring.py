"""A trained booster with everything needed to score: classes, features, threshold.

The same class serves a model just trained and one loaded from the registry
(``models.registry.load_champion``), so the batch scorer, the evaluation and the streaming job
score identically.

Scores: the spam-SIM model is multiclass; its score is ``1 - P(normal)`` and its fraud type is
the most probable fraud class. The spoof-call model is binary; its score is ``P(spoofed)``.
A row is flagged when its score is strictly above the threshold chosen on validation.

A card may name ``certain_features``: 0/1 features whose value 1 is fraud by definition (the
spoofing rules that are facts of the numbering plan: an invalid, unallocated or Do-Not-Originate
CLI, ``models.baseline.SPOOF_CERTAIN_FEATURES``). A row with one of them set scores 1.0, above
any threshold, whatever the booster says: the model decides the rest. The booster's probability
for such rows saturates just below 1 beside the hardest look-alikes, so at a low FPR it could
miss calls the rules never miss; with the override the model is never worse than those rules.
Because the override lives here, the evaluation, the batch scorer and the stream (which scores
with this class) apply it alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.sim import WINDOW_END, WINDOW_START
from models.matrix import feature_matrix
from models.quantiles import FeatureQuantiles
from models.reasons import Reason, explain

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = [
    "FLAGGED", "FRAUD_TYPE", "SCORE", "ModelCard", "ScoringModel", "feature_matrix", "history_start", "history_starts",
    "reaches_before",
]

SCORE = "score"
FRAUD_TYPE = "fraud_type"
FLAGGED = "flagged"


def history_starts(buckets: np.ndarray, *, reach_s: float) -> np.ndarray:
    """Epoch s where each run of a scorer's records begins, from the sub-buckets (epoch s) they
    fall in: the first, and each one after a gap of a window (``reach_s``) or more, which no
    window spans. Sorted; empty without records."""
    b = np.unique(np.asarray(buckets, dtype=np.float64))
    b = b[~np.isnan(b)]
    if b.size == 0:
        return b
    return b[np.concatenate([[0], np.flatnonzero(np.diff(b) >= reach_s) + 1])]


def history_start(buckets: np.ndarray, *, reach_s: float) -> float | None:
    """Epoch s of the first record of a stream's state: where its last run begins
    (:func:`history_starts`). What lies before is a straggler no later window reaches, so a stray
    old record does not make the day after it look warm, while a warm start or a long backlog
    counts from its own beginning. ``None`` without records."""
    starts = history_starts(buckets, reach_s=reach_s)
    return float(starts[-1]) if starts.size else None


def reaches_before(frame: pd.DataFrame, first_record: pd.Timestamp | pd.DatetimeIndex) -> np.ndarray:
    """SIM windows that start before the first record of their history: computed without part of
    it (a stream's first day on an empty state), judged at the cold threshold. ``first_record``:
    one minute, or the starts of several runs of records (:func:`history_starts`), where each row
    counts from the last start at or before its window's end."""
    starts = pd.DatetimeIndex([first_record] if isinstance(first_record, pd.Timestamp) else first_record)
    start = pd.to_datetime(frame[WINDOW_START], utc=True)
    starts = starts.tz_convert("UTC").sort_values()
    end = pd.to_datetime(frame[WINDOW_END], utc=True)
    at = np.searchsorted(starts.asi8, end.to_numpy(dtype="datetime64[ns]").astype(np.int64), side="right") - 1
    own = starts.asi8[np.maximum(at, 0)]
    return (at < 0) | (start.to_numpy(dtype="datetime64[ns]").astype(np.int64) < own)


@dataclass(frozen=True)
class ModelCard:
    """What is stored beside the booster in the registry (``simguard_model.json``)."""

    task: str
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    #: flag when score > threshold; chosen on validation for ``target_fpr``
    threshold: float
    target_fpr: float
    best_iteration: int
    #: the ``FeatureSettings`` the features were built with: a scorer must use the same
    feature_settings: dict[str, Any] = field(default_factory=dict)
    #: 0/1 features that flag a row by themselves (score 1.0): rules that hold by definition
    certain_features: tuple[str, ...] = ()
    #: the threshold for rows whose window reaches before the scorer's first record (a stream
    #: started without the day before): chosen for ``target_fpr`` on the validation day's rows
    #: computed from that day's records alone (a start at midnight); ``None``: ``threshold``
    cold_threshold: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        raw = json.loads(text)
        raw["classes"] = tuple(raw["classes"])
        raw["feature_names"] = tuple(raw["feature_names"])
        # cards logged before the field existed have none
        raw["certain_features"] = tuple(raw.get("certain_features", ()))
        return cls(**raw)

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2


class ScoringModel:
    """``score(frame)`` is vectorised over a pandas DataFrame holding the feature columns.

    >>> model.score(features)[["score", "fraud_type", "flagged"]]  # doctest: +SKIP
    """

    def __init__(
        self,
        booster: lgb.Booster,
        card: ModelCard,
        *,
        name: str | None = None,
        version: int | None = None,
        run_id: str | None = None,
        quantiles: FeatureQuantiles | None = None,
    ) -> None:
        self.booster = booster
        self.card = card
        self.name = name
        self.version = version
        self.run_id = run_id
        #: the validation population's feature quantiles (percentiles for the reasons)
        self.quantiles = quantiles

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.card.feature_names

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    @property
    def binary(self) -> bool:
        return self.card.binary

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def cold_threshold(self) -> float:
        """The threshold for rows whose window reaches before the first record (see the card)."""
        cold = self.card.cold_threshold
        return self.card.threshold if cold is None else cold

    @property
    def has_cold_threshold(self) -> bool:
        """False for a version trained before cold thresholds: one threshold for all its rows."""
        return self.card.cold_threshold is not None

    def thresholds(self, frame: pd.DataFrame, *, first_record: pd.Timestamp | pd.DatetimeIndex) -> np.ndarray:
        """Per row of ``frame`` (SIM windows): the cold threshold where its window starts before
        the first record of its history (:func:`reaches_before`), else the threshold."""
        return np.where(reaches_before(frame, first_record), self.cold_threshold, self.threshold)

    def with_threshold(self, threshold: float) -> ScoringModel:
        return self._with_card(threshold=float(threshold))

    def with_cold_threshold(self, threshold: float) -> ScoringModel:
        return self._with_card(cold_threshold=float(threshold))

    def _with_card(self, **changes: Any) -> ScoringModel:
        card = ModelCard(**{**asdict(self.card), **changes})
        return ScoringModel(
            self.booster, card, name=self.name, version=self.version, run_id=self.run_id, quantiles=self.quantiles
        )

    def with_certain_features(self, names: tuple[str, ...] | list[str]) -> ScoringModel:
        """This model with ``names`` (feature columns) flagging a row outright when set."""
        unknown = [n for n in names if n not in self.feature_names]
        if unknown:
            raise ValueError(f"certain features {unknown} are not features of this model")
        return self._with_card(certain_features=tuple(names))

    def certain(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows with one of the card's ``certain_features`` set (all False when it has none)."""
        hit = np.zeros(len(frame), dtype=bool)
        if self.card.certain_features:
            values = feature_matrix(frame, self.card.certain_features)
            hit = np.nan_to_num(values, nan=0.0).max(axis=1) >= 0.5
        return hit

    def with_quantiles(self, population: pd.DataFrame) -> ScoringModel:
        """This model with the feature quantiles of ``population`` (the rows it is validated on)."""
        quantiles = FeatureQuantiles.from_frame(population, self.feature_names)
        return ScoringModel(
            self.booster, self.card, name=self.name, version=self.version, run_id=self.run_id, quantiles=quantiles
        )

    def proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape ``(n, len(classes))``."""
        raw = np.asarray(self.booster.predict(feature_matrix(frame, self.feature_names)), dtype=np.float64)
        if self.card.binary:
            return np.column_stack([1.0 - raw, raw])
        return raw.reshape(len(frame), len(self.classes))

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``score``, ``fraud_type`` and ``flagged`` per row, on the input's index."""
        p = self.proba(frame)
        fraud = p[:, 1:]
        kind = np.asarray(self.classes[1:], dtype=object)[fraud.argmax(axis=1)]
        # 1 - P(normal) rounds to exactly 1.0 for confident rows; the sum keeps them ordered
        score = fraud.sum(axis=1)
        # a rule that holds by definition flags the row whatever the booster says
        score = np.where(self.certain(frame), 1.0, score)
        return pd.DataFrame(
            {SCORE: score, FRAUD_TYPE: kind, FLAGGED: score > self.threshold}, index=frame.index
        )

    def reasons(self, frame: pd.DataFrame, *, top_k: int, feature_settings: Any) -> list[list[Reason]]:
        """The ``top_k`` features that pushed each row towards its fraud type, as sentences."""
        return explain(self, frame, top_k=top_k, feature_settings=feature_settings)
