"""A simulated day (its calendar and random streams) and the draws every generator shares:
times, call outcomes, runs."""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass

import numpy as np

from pipeline.simulate.config import Lognormal, ReleaseMix
from pipeline.simulate.populations import DAY_US, HOUR_US, World
from pipeline.simulate.traffic.events import ANSWERED, FAILED, NO_ANSWER


@dataclass(frozen=True)
class Day:
    world: World
    index: int

    @property
    def start_us(self) -> int:
        return self.world.day_start_us(self.index)

    @property
    def weekend(self) -> bool:
        # the local calendar day that covers most of the UTC day
        date = self.world.config.network.start_date + dt.timedelta(days=self.index)
        return date.weekday() >= 5

    @property
    def drift(self) -> bool:
        d = self.world.config.drift
        return d.enabled and self.index >= d.start_day

    def rng(self, name: str) -> np.random.Generator:
        ss = np.random.SeedSequence([self.world.seed, self.index + 1, zlib.crc32(name.encode())])
        return np.random.default_rng(ss)


def runs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``np.repeat(arange(len(counts)), counts)``: the owner and the rank within its run."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - starts[owner]


def times_by_profile(rng: np.random.Generator, n: int, day: Day, profile_local: list[float] | None) -> np.ndarray:
    """Start times on ``day`` following local-hour weights (``None``: uniform)."""
    if profile_local is None:
        return day.start_us + (rng.random(n) * DAY_US).astype(np.int64)
    offset = day.world.config.network.utc_offset_hours
    w = np.roll(np.asarray(profile_local, dtype=np.float64), -offset)
    hour = rng.choice(24, size=n, p=w / w.sum())
    return day.start_us + hour * HOUR_US + (rng.random(n) * HOUR_US).astype(np.int64)


def local_hours_to_utc(day: Day, local_h: np.ndarray) -> np.ndarray:
    """Fractional local hours of the day -> UTC timestamps inside the same UTC day."""
    offset = day.world.config.network.utc_offset_hours
    utc_h = np.mod(local_h - offset, 24.0)
    return day.start_us + (utc_h * HOUR_US).astype(np.int64)


def local_hour(day: Day, t_us: np.ndarray) -> np.ndarray:
    offset = day.world.config.network.utc_offset_hours
    return ((t_us // HOUR_US) + offset) % 24


def outcomes(
    rng: np.random.Generator,
    n: int,
    mix: ReleaseMix,
    duration: Lognormal,
    *,
    ring: Lognormal,
    answer_factor: np.ndarray | float = 1.0,
    duration_factor: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(release cause, ring seconds, duration seconds) of ``n`` call attempts."""
    p = mix.probabilities()
    p_answer = np.clip(p[ANSWERED] * np.asarray(answer_factor, dtype=np.float64), 0.0, 0.97)
    answered = rng.random(n) < np.broadcast_to(p_answer, (n,))
    other = p.copy()
    other[ANSWERED] = 0.0
    if other.sum() <= 0:
        other[NO_ANSWER] = 1.0
    cause = np.where(answered, ANSWERED, rng.choice(len(p), size=n, p=other / other.sum()))
    seconds = np.maximum(1.0, np.rint(duration.sample(rng, n) * duration_factor))
    dur = np.where(answered, seconds, 0.0)
    ring_s = np.round(np.clip(ring.sample(rng, n), 1.0, 40.0), 1)
    return cause.astype(np.int8), ring_s, dur


def fail_unassigned(world: World, b_num: np.ndarray, cause: np.ndarray, dur: np.ndarray) -> None:
    """Calls to numbers of a mobile range that no SIM holds fail (sequential dialling)."""
    dead = world.unassigned_mobile(b_num)
    cause[dead] = FAILED
    dur[dead] = 0.0


def sms_outcomes(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.full(n, ANSWERED, dtype=np.int8), np.zeros(n), np.zeros(n)
