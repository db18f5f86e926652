"""CDRs of one simulated day in columnar form, and the codes they carry."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from features.schema import RELEASE_CAUSES, TRUNK_TYPES

ANSWERED = RELEASE_CAUSES.index("answered")
NO_ANSWER = RELEASE_CAUSES.index("no_answer")
BUSY = RELEASE_CAUSES.index("busy")
REJECTED = RELEASE_CAUSES.index("rejected")
FAILED = RELEASE_CAUSES.index("failed")
CANCELLED = RELEASE_CAUSES.index("cancelled")
SUBSCRIBER = TRUNK_TYPES.index("subscriber")
INTERCONNECT = TRUNK_TYPES.index("domestic_interconnect")
GATEWAY = TRUNK_TYPES.index("international_gateway")
NOT_SPOOFED = -1


@dataclass
class Events:
    """CDRs in columnar form; identities as int64 (-1 where the CDR field is null)."""

    t_us: np.ndarray
    caller: np.ndarray  # entity id, -1 for spoofed CLIs (the spoofer is nobody we know)
    a_num: np.ndarray
    b_num: np.ndarray
    sms: np.ndarray
    cause: np.ndarray
    ring_s: np.ndarray
    dur_s: np.ndarray
    cell: np.ndarray
    imei: np.ndarray
    imsi: np.ndarray
    trunk: np.ndarray
    trunk_id: np.ndarray
    roaming: np.ndarray
    op: np.ndarray
    spoof: np.ndarray

    _DTYPES: ClassVar[dict[str, type]] = {
        "t_us": np.int64,
        "caller": np.int64,
        "a_num": np.int64,
        "b_num": np.int64,
        "sms": np.bool_,
        "cause": np.int8,
        "ring_s": np.float64,
        "dur_s": np.float64,
        "cell": np.int32,
        "imei": np.int64,
        "imsi": np.int64,
        "trunk": np.int8,
        "trunk_id": np.int16,
        "roaming": np.bool_,
        "op": np.int8,
        "spoof": np.int8,
    }

    def __post_init__(self) -> None:
        n = len(self.t_us)
        for f in fields(self):
            value = np.asarray(getattr(self, f.name))
            if value.ndim == 0:
                value = np.full(n, value)
            value = value.astype(self._DTYPES[f.name], copy=False)
            if len(value) != n:
                raise ValueError(f"column {f.name} has {len(value)} rows, expected {n}")
            setattr(self, f.name, value)

    def __len__(self) -> int:
        return len(self.t_us)

    @classmethod
    def empty(cls) -> Events:
        return cls(**{f.name: np.zeros(0, dtype=cls._DTYPES[f.name]) for f in fields(cls)})

    @classmethod
    def concat(cls, parts: list[Events]) -> Events:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def take(self, index: np.ndarray) -> Events:
        return Events(**{f.name: getattr(self, f.name)[index] for f in fields(self)})
