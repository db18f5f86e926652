"""One simulated day of traffic, population by population, as columns of numpy arrays.

Each generator returns :class:`Events` (one entry per CDR, identities still as integers) and
draws from its own random stream, seeded by (seed, day, generator name), so a run is
deterministic and one population's parameters never shift another's randomness. Nothing here
loops over records: loops run over robocall operations, Wangiri and spoofing campaigns (tens a
day), never over calls.

Where the fields come from (DOMAIN.md, "What a CDR carries"):

* subscriber ingress (a SIM calls): ``operator`` is the SIM's home operator, ``a_imsi``,
  ``a_imei``, ``cell_id`` and ``lac`` are set, ``in_trunk_id`` is null;
* gateway and interconnect ingress: ``operator`` is the terminating operator (the callee's),
  ``a_imsi``/``a_imei``/``cell_id``/``lac`` are null, ``in_trunk_id`` names the trunk group;
  ``a_roaming`` on gateway records is the HLR's answer for a domestic CLI (a roamer calling home
  shows ``True``, with a small stale-data error);
* answered calls have ``answer_time = start_time + ring`` and a positive duration, all others
  a null answer time and duration 0; SMS are ``answered`` at submission with duration 0.

A SIM's incoming calls are other parties' records with ``b_number`` = that SIM: call-backs,
customers calling businesses and calls between SIM-box siblings are real records.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from features.schema import RELEASE_CAUSES, TRUNK_TYPES
from pipeline.simulate.config import SPOOF_KINDS, Lognormal, ReleaseMix
from pipeline.simulate.numbers import digit_count, random_numbers
from pipeline.simulate.populations import (
    BUSINESS_POPULATIONS,
    DAY_US,
    HOUR_US,
    POP,
    POPULATIONS,
    SIMBOX_POPULATIONS,
    TRUNK_POPULATIONS,
    US,
    World,
)

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


# --------------------------------------------------------------------------------------------
# shared helpers


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


def is_domestic(world: World, numbers: np.ndarray) -> np.ndarray:
    cc = world.ranges.country_code
    cc_digits = len(str(cc))
    nd = digit_count(np.maximum(numbers, 1))
    return numbers // (10 ** np.maximum(nd - cc_digits, 0)) == cc


def terminating_operator(world: World, rng: np.random.Generator, b_num: np.ndarray) -> np.ndarray:
    """Operator reporting a trunk-ingress record: the one owning the called number."""
    op = world.ranges.operator_of(b_num)
    missing = op < 0
    if missing.any():
        # service numbers (1900, 1800) terminate at any operator's platform
        op[missing] = rng.integers(0, len(world.operators), size=int(missing.sum()))
    return op


def sim_events(
    world: World,
    *,
    caller: np.ndarray,
    b_num: np.ndarray,
    t_us: np.ndarray,
    sms: np.ndarray | bool,
    cause: np.ndarray,
    ring_s: np.ndarray,
    dur_s: np.ndarray,
    cell: np.ndarray,
    imei: np.ndarray,
) -> Events:
    """Records of SIMs calling from home: subscriber ingress at the SIM's operator."""
    return Events(
        t_us=t_us,
        caller=caller,
        a_num=world.number[caller],
        b_num=b_num,
        sms=sms,
        cause=cause,
        ring_s=ring_s,
        dur_s=dur_s,
        cell=cell,
        imei=imei,
        imsi=world.imsi[caller],
        trunk=SUBSCRIBER,
        trunk_id=-1,
        roaming=False,
        op=world.operator[caller],
        spoof=NOT_SPOOFED,
    )


def trunk_events(
    world: World,
    rng: np.random.Generator,
    *,
    caller: np.ndarray,
    a_num: np.ndarray,
    b_num: np.ndarray,
    t_us: np.ndarray,
    cause: np.ndarray,
    ring_s: np.ndarray,
    dur_s: np.ndarray,
    trunk: int,
    trunk_id: np.ndarray,
    roaming: np.ndarray | bool = False,
    spoof: np.ndarray | int = NOT_SPOOFED,
) -> Events:
    """Records of calls handed over by another network, reported by the terminating operator."""
    return Events(
        t_us=t_us,
        caller=caller,
        a_num=a_num,
        b_num=b_num,
        sms=False,
        cause=cause,
        ring_s=ring_s,
        dur_s=dur_s,
        cell=-1,
        imei=-1,
        imsi=-1,
        trunk=trunk,
        trunk_id=trunk_id,
        roaming=roaming,
        op=terminating_operator(world, rng, b_num),
        spoof=spoof,
    )


def people_events(
    world: World,
    day: Day,
    rng: np.random.Generator,
    *,
    caller: np.ndarray,
    b_num: np.ndarray,
    t_us: np.ndarray,
    sms: np.ndarray,
    cause: np.ndarray,
    ring_s: np.ndarray,
    dur_s: np.ndarray,
) -> Events:
    """Records of people (ordinary subscribers and roamers) calling: cells follow home and work,
    and a roamer abroad reaches Vietnamese numbers through the international gateway."""
    cfg = world.config.ordinary
    n = len(caller)
    hour = local_hour(day, t_us)
    at_work = (world.work_cell[caller] >= 0) & (hour >= 8) & (hour < 17) & (not day.weekend) & (rng.random(n) < 0.8)
    cell = np.where(at_work, world.work_cell[caller], world.home_cell[caller])
    moving = rng.random(n) < cfg.mobility_noise
    if moving.any():
        cell[moving] = world.cells.pick(rng, world.operator[caller[moving]], world.area[caller[moving]])
    imei = world.imei[caller].copy()
    second = world.second_imei[caller]
    use_second = (second >= 0) & (rng.random(n) < 0.3)
    imei[use_second] = second[use_second]
    home = sim_events(
        world,
        caller=caller,
        b_num=b_num,
        t_us=t_us,
        sms=sms,
        cause=cause,
        ring_s=ring_s,
        dur_s=dur_s,
        cell=cell,
        imei=imei,
    )
    abroad = world.abroad(day.index, caller)
    if not abroad.any():
        return home
    roam_cfg = world.config.roaming
    r_idx = caller - world.slices["roamer"].start
    country = np.where(abroad, world.roamer_country[np.clip(r_idx, 0, len(world.roamer_country) - 1)], 0)
    # records of the visited network (TAP): the SIM, a visited cell, roaming
    vcell = world.cells.visited_start[country] + (rng.random(n) * world.cells.visited_count[country]).astype(np.int64)
    home.cell = np.where(abroad, vcell, home.cell).astype(np.int32)
    home.roaming = abroad.copy()
    via_gateway = abroad & ~sms & is_domestic(world, b_num)
    if not via_gateway.any():
        return home
    g = np.flatnonzero(via_gateway)
    # the visited network hands calls home over its regular (clean) carrier, not a grey route
    clean = world.clean_carriers
    stale = rng.random(len(g)) < roam_cfg.stale_hlr_rate
    gateway = trunk_events(
        world,
        rng,
        caller=caller[g],
        a_num=world.number[caller[g]],
        b_num=b_num[g],
        t_us=t_us[g],
        cause=cause[g],
        ring_s=ring_s[g],
        dur_s=dur_s[g],
        trunk=GATEWAY,
        trunk_id=world.igw_trunk0 + clean[world.roamer_country[r_idx[g]] % len(clean)],
        roaming=~stale,
    )
    out = Events.concat([home.take(np.flatnonzero(~via_gateway)), gateway])
    return out


def sms_outcomes(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.full(n, ANSWERED, dtype=np.int8), np.zeros(n), np.zeros(n)


# --------------------------------------------------------------------------------------------
# populations


def gen_people(world: World, day: Day) -> Events:
    rng = day.rng("people")
    cfg = world.config.ordinary
    net = world.config.network
    n_people = world.n_people
    people = np.arange(n_people)
    abroad = world.abroad(day.index, people)
    factor = np.where(abroad, world.config.roaming.activity_factor, 1.0) * (net.weekend_factor if day.weekend else 1.0)
    n_voice = rng.poisson(world.voice_rate * factor)
    n_sms = rng.poisson(world.sms_rate * factor)
    caller = np.r_[np.repeat(people, n_voice), np.repeat(people, n_sms)]
    sms = np.r_[np.zeros(int(n_voice.sum()), bool), np.ones(int(n_sms.sum()), bool)]
    n = len(caller)
    t_us = times_by_profile(rng, n, day, net.hourly_profile_local)

    b_ent = world.graph.sample(rng, caller)
    b_num = world.number[b_ent]
    stranger = rng.random(n) < np.where(sms, cfg.stranger_share / 2, cfg.stranger_share)
    kinds = list(cfg.stranger_mix)
    w = np.array([cfg.stranger_mix[k] for k in kinds], dtype=np.float64)
    kind = rng.choice(len(kinds), size=n, p=w / w.sum())
    for k, name in enumerate(kinds):
        sel = np.flatnonzero(stranger & (kind == k))
        if sel.size == 0:
            continue
        if name == "subscriber":
            other = (caller[sel] + rng.integers(1, n_people, size=sel.size)) % n_people
            b_num[sel] = world.number[other]
        elif name == "fixed":
            ids = world.ids("fixed_line")
            b_num[sel] = world.number[rng.choice(ids, size=sel.size)]
        elif name == "international":
            ids = world.ids("foreign_caller")
            known = world.number[rng.choice(ids, size=sel.size)]
            fresh = random_numbers(rng, rng.choice(world.visited_prefixes, size=sel.size), suffix_digits=9)
            b_num[sel] = np.where(rng.random(sel.size) < 0.5, known, fresh)
        else:
            b_num[sel] = rng.choice(world.service_numbers, size=sel.size)
    # abroad, part of the calls go to local numbers of the visited country
    away = world.abroad(day.index, caller) & (rng.random(n) >= world.config.roaming.home_call_share)
    if away.any():
        r_idx = caller[away] - world.slices["roamer"].start
        b_num[away] = random_numbers(rng, world.visited_prefixes[world.roamer_country[r_idx]], suffix_digits=9)

    cause, ring_s, dur_s = outcomes(rng, n, cfg.release, cfg.duration_s, ring=net.ring_s)
    s_cause, s_ring, s_dur = sms_outcomes(int(sms.sum()))
    cause[sms], ring_s[sms], dur_s[sms] = s_cause, s_ring, s_dur
    fail_unassigned(world, b_num, cause, dur_s)
    keep = world.activity_start_us[caller] <= t_us
    return people_events(
        world,
        day,
        rng,
        caller=caller[keep],
        b_num=b_num[keep],
        t_us=t_us[keep],
        sms=sms[keep],
        cause=cause[keep],
        ring_s=ring_s[keep],
        dur_s=dur_s[keep],
    )


def gen_business(world: World, day: Day, population: str) -> Events:
    rng = day.rng(population)
    cfg = world.config.business(population)
    bg = world.businesses[population]
    net = world.config.network
    n_sims = len(bg.sims)
    if n_sims == 0:
        return Events.empty()
    factor = cfg.weekend_factor if day.weekend else 1.0
    hours = cfg.hours_local.hours
    lo = cfg.hours_local.low

    # outgoing calls
    n_out = rng.poisson(bg.out_rate * hours * factor)
    sim, rank = runs(n_out)
    n = len(sim)
    auto = bg.group_auto_dialler[bg.group[sim]]
    # an auto-dialler paces calls evenly through the shift; people dial whenever they are free
    paced = lo + (rank + 0.5 + 0.1 * rng.standard_normal(n)) / np.maximum(n_out[sim], 1) * hours
    free = lo + rng.random(n) * hours
    t_us = local_hours_to_utc(day, np.clip(np.where(auto, paced, free), lo, lo + hours - 1e-6))
    if cfg.callees == "lead_list":
        n_people = world.n_people
        # each day a fresh stretch of the list: one call per number per 24 h (Decree 91/2020)
        pos = (bg.lead_cursor[sim] + day.index * n_out[sim] + rank) % n_people
        b_ent = world.lead_list[pos]
    else:
        b_ent = world.random_people(rng, n)
        if cfg.callees == "fleet":
            to_fleet = rng.random(n) < cfg.fleet_share
            col = rng.integers(0, bg.fleet.shape[1], size=n)
            b_ent = np.where(to_fleet, bg.fleet[bg.group[sim], col], b_ent)
    b_num = world.number[b_ent]
    cause, ring_s, dur_s = outcomes(
        rng,
        n,
        cfg.release,
        cfg.duration_s,
        ring=net.ring_s,
        answer_factor=bg.answer_factor[sim],
        duration_factor=bg.duration_factor[sim],
    )
    fail_unassigned(world, b_num, cause, dur_s)

    # SMS to customers
    n_sms = rng.poisson(np.full(n_sims, cfg.sms_per_day * factor))
    s_sim, _ = runs(n_sms)
    s_t = local_hours_to_utc(day, lo + rng.random(len(s_sim)) * hours)
    s_b = world.number[world.random_people(rng, len(s_sim))]

    all_sim = np.r_[sim, s_sim]
    cell = _business_cells(world, rng, day, population, all_sim)
    imei = _business_imeis(world, rng, population, all_sim)
    s_cause, s_ring, s_dur = sms_outcomes(len(s_sim))
    out = sim_events(
        world,
        caller=bg.sims[all_sim],
        b_num=np.r_[b_num, s_b],
        t_us=np.r_[t_us, s_t],
        sms=np.r_[np.zeros(n, bool), np.ones(len(s_sim), bool)],
        cause=np.r_[cause, s_cause],
        ring_s=np.r_[ring_s, s_ring],
        dur_s=np.r_[dur_s, s_dur],
        cell=cell,
        imei=imei,
    )

    # customers calling in
    n_in = rng.poisson(bg.incoming_rate * factor)
    i_sim, _ = runs(n_in)
    m = len(i_sim)
    i_caller = world.random_people(rng, m)
    i_t = local_hours_to_utc(day, lo + rng.random(m) * hours)
    i_cause, i_ring, i_dur = outcomes(rng, m, cfg.incoming_release, cfg.incoming_duration_s, ring=net.ring_s)
    incoming = people_events(
        world,
        day,
        rng,
        caller=i_caller,
        b_num=world.number[bg.sims[i_sim]],
        t_us=i_t,
        sms=np.zeros(m, bool),
        cause=i_cause,
        ring_s=i_ring,
        dur_s=i_dur,
    )
    return Events.concat([out, incoming])


def _business_cells(world: World, rng: np.random.Generator, day: Day, population: str, sim: np.ndarray) -> np.ndarray:
    cfg = world.config.business(population)
    bg = world.businesses[population]
    if cfg.cells_per_day.high <= 1:
        return bg.group_cell[bg.group[sim]]
    # on the move: a handful of cells of the home area, a different handful each day
    day_rng = day.rng(population + "/cells")
    k = np.maximum(cfg.cells_per_day.sample(day_rng, len(bg.sims)), 1)
    base = day_rng.integers(0, 10**6, size=len(bg.sims))
    ents = bg.sims[sim]
    pick = base[sim] + rng.integers(0, 10**6, size=len(sim)) % k[sim]
    return world.cells.nth(world.operator[ents], world.area[ents], pick)


def _business_imeis(world: World, rng: np.random.Generator, population: str, sim: np.ndarray) -> np.ndarray:
    bg = world.businesses[population]
    g = bg.group[sim]
    plen = bg.pool_len[g]
    own = world.imei[bg.sims[sim]]
    if bg.pool.size == 0:
        return own
    slot = bg.pool_start[g] + (rng.random(len(sim)) * np.maximum(plen, 1)).astype(np.int64)
    return np.where(plen > 0, bg.pool[np.minimum(slot, bg.pool.size - 1)], own)


def gen_robocalls(world: World, day: Day) -> Events:
    rng = day.rng("spam_robocall")
    cfg = world.config.spam_robocall
    net = world.config.network
    drift = world.config.drift
    work_s = cfg.hours_local.hours * 3600.0
    start_utc_s = ((cfg.hours_local.low - net.utc_offset_hours) % 24) * 3600
    tau0 = day.index * work_s
    parts: list[Events] = []
    for op in world.robocall_ops:
        interval = op.interval_s * (drift.robocall_interval_factor if day.drift else 1.0)
        m = int(work_s / interval * 1.2) + 50
        gaps = interval * np.exp(op.jitter * rng.standard_normal(m))
        bursts = cfg.burst_calls.sample(rng, m // max(cfg.burst_calls.low, 1) + 2)
        edges = np.cumsum(bursts)
        edges = edges[edges < m]
        gaps[edges] += cfg.burst_pause_min.sample(rng, len(edges)) * 60.0
        tau = tau0 + rng.uniform(0, 300) + np.cumsum(gaps)
        tau = tau[tau < tau0 + work_s]
        pos = np.searchsorted(op.bounds_s, tau, side="right") - 1
        ok = pos < len(op.sims)
        tau, pos = tau[ok], pos[ok]
        n = len(tau)
        if n == 0:
            continue
        t_us = day.start_us + int(start_utc_s * US) + ((tau - tau0) * US).astype(np.int64)
        # the dialler resumes each morning about where it stopped the day before
        cursor = day.index * int(work_s / op.interval_s * 0.7) + np.arange(n)
        if op.sequential:
            b_num = op.dial_start + cursor % op.dial_span
        else:
            b_num = world.number[world.lead_list[(op.dial_start + cursor) % world.n_people]]
        cause, ring_s, dur_s = outcomes(
            rng,
            n,
            cfg.release,
            cfg.duration_s,
            ring=net.ring_s,
            answer_factor=op.answer_factor,
            duration_factor=op.duration_factor * (drift.robocall_duration_factor if day.drift else 1.0),
        )
        fail_unassigned(world, b_num, cause, dur_s)
        parts.append(
            sim_events(
                world,
                caller=op.sims[pos],
                b_num=b_num,
                t_us=t_us,
                sms=False,
                cause=cause,
                ring_s=ring_s,
                dur_s=dur_s,
                cell=op.cells[rng.integers(0, len(op.cells), size=n)],
                imei=op.devices[pos % len(op.devices)],
            )
        )
    return Events.concat(parts)


def gen_simbox(world: World, day: Day, population: str) -> Events:
    rng = day.rng(population)
    cfg = world.config.simbox if population == "simbox" else world.config.simbox_evasive
    bx = world.boxes[population]
    net = world.config.network
    n_sims = len(bx.sims)
    if n_sims == 0:
        return Events.empty()

    def legs(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell and IMEI of SIMs (positions in ``bx.sims``) for one record each."""
        which = (rng.random(len(pos)) * bx.n_cells[pos]).astype(np.int64)
        cell = bx.cells[pos, which]
        box = bx.box[pos]
        plen = bx.pool_len[box]
        own = world.imei[bx.sims[pos]]
        if bx.pool.size == 0:
            return cell, own
        # the rack hands each call to whichever module is free: IMSIs rotate across IMEIs
        slot = bx.pool_start[box] + (rng.random(len(pos)) * np.maximum(plen, 1)).astype(np.int64)
        return cell, np.where(plen > 0, bx.pool[np.minimum(slot, bx.pool.size - 1)], own)

    n_out = rng.poisson(bx.rate * 24.0)
    sim, _ = runs(n_out)
    n = len(sim)
    t_us = times_by_profile(rng, n, day, cfg.hourly_profile_local)
    op = world.operator[bx.sims[sim]]
    on_net = rng.random(n) < cfg.on_net_share
    b_ent = world.random_people(rng, n)
    for o, members in enumerate(world.people_by_op):
        sel = np.flatnonzero(on_net & (op == o))
        if sel.size and members.size:
            b_ent[sel] = members[rng.integers(0, members.size, size=sel.size)]
    b_num = world.number[b_ent]
    cause, ring_s, dur_s = outcomes(rng, n, cfg.release, cfg.duration_s, ring=net.ring_s)
    fail_unassigned(world, b_num, cause, dur_s)
    cell, imei = legs(sim)
    parts = [
        sim_events(
            world,
            caller=bx.sims[sim],
            b_num=b_num,
            t_us=t_us,
            sms=False,
            cause=cause,
            ring_s=ring_s,
            dur_s=dur_s,
            cell=cell,
            imei=imei,
        )
    ]

    # staged social life: siblings in the same box call and text each other
    peer_calls = cfg.peer_calls_per_sim_per_day
    if day.drift:
        peer_calls += world.config.drift.simbox_peer_calls_per_sim_per_day
    for is_sms, rate in ((False, peer_calls), (True, cfg.peer_sms_per_sim_per_day)):
        if rate <= 0:
            continue
        n_in = rng.poisson(np.full(n_sims, rate))
        callee, _ = runs(n_in)
        m = len(callee)
        box = bx.box[callee]
        size = bx.box_sims_len[box]
        shift = rng.integers(1, np.maximum(size, 2), size=m)
        caller = bx.box_sims_start[box] + (callee - bx.box_sims_start[box] + shift) % np.maximum(size, 1)
        if is_sms:
            p_cause, p_ring, p_dur = sms_outcomes(m)
        else:
            p_cause, p_ring, p_dur = outcomes(
                rng, m, ReleaseMix(answered=0.9, no_answer=0.1), Lognormal(median=60, sigma=0.8), ring=net.ring_s
            )
        p_cell, p_imei = legs(caller)
        parts.append(
            sim_events(
                world,
                caller=bx.sims[caller],
                b_num=world.number[bx.sims[callee]],
                t_us=times_by_profile(rng, m, day, cfg.hourly_profile_local or net.hourly_profile_local),
                sms=is_sms,
                cause=p_cause,
                ring_s=p_ring,
                dur_s=p_dur,
                cell=p_cell,
                imei=p_imei,
            )
        )
    return Events.concat(parts)


def gen_trunk_callers(world: World, day: Day) -> Events:
    rng = day.rng("trunk")
    net = world.config.network
    clean = world.clean_carriers
    parts: list[Events] = []
    for population in TRUNK_POPULATIONS:
        cfg = getattr(world.config, population)
        ids = world.ids(population)
        factor = net.weekend_factor if day.weekend else 1.0
        n_calls = rng.poisson(world.trunk_rate[ids] * factor)
        caller = np.repeat(ids, n_calls)
        n = len(caller)
        if cfg.hours_local is None:
            t_us = times_by_profile(rng, n, day, net.hourly_profile_local)
        else:
            t_us = local_hours_to_utc(day, cfg.hours_local.low + rng.random(n) * cfg.hours_local.hours)
        b_num = world.number[world.random_people(rng, n)]
        cause, ring_s, dur_s = outcomes(rng, n, cfg.release, cfg.duration_s, ring=net.ring_s)
        if population == "foreign_caller":
            trunk, trunk_id = GATEWAY, world.igw_trunk0 + rng.choice(clean, size=n)
        else:
            trunk, trunk_id = INTERCONNECT, world.dic_trunk0 + world.operator[caller]
        parts.append(
            trunk_events(
                world,
                rng,
                caller=caller,
                a_num=world.number[caller],
                b_num=b_num,
                t_us=t_us,
                cause=cause,
                ring_s=ring_s,
                dur_s=dur_s,
                trunk=trunk,
                trunk_id=trunk_id,
            )
        )
    return Events.concat(parts)


def gen_wangiri(world: World, day: Day) -> Events:
    rng = day.rng("wangiri")
    cfg = world.config.wangiri
    parts: list[Events] = []
    for c in world.wangiri_campaigns:
        if c.day != day.index:
            continue
        k = np.arange(c.n_calls)
        gaps = c.interval_s * np.exp(0.3 * rng.standard_normal(c.n_calls))
        t_us = c.start_us + (np.cumsum(gaps) * US).astype(np.int64)
        b_num = c.first_number + k
        dead = world.unassigned_mobile(b_num)
        picked_up = rng.random(c.n_calls) < cfg.answered_share
        # one ring, then the caller hangs up before anyone answers (INVITE then CANCEL)
        cause = np.where(dead, FAILED, np.where(picked_up, ANSWERED, CANCELLED)).astype(np.int8)
        ring_s = np.round(rng.uniform(1.0, 4.0, size=c.n_calls), 1)
        dur_s = np.where(cause == ANSWERED, rng.integers(1, 4, size=c.n_calls), 0).astype(np.float64)
        parts.append(
            trunk_events(
                world,
                rng,
                caller=c.clis[k % len(c.clis)],
                a_num=world.number[c.clis[k % len(c.clis)]],
                b_num=b_num,
                t_us=t_us,
                cause=cause,
                ring_s=ring_s,
                dur_s=dur_s,
                trunk=GATEWAY,
                trunk_id=world.igw_trunk0 + c.carrier,
            )
        )
    return Events.concat(parts)


def gen_spoofing(world: World, day: Day) -> Events:
    rng = day.rng("spoofing")
    cfg = world.config.spoofing
    net = world.config.network
    n_campaigns = max(cfg.min_campaigns_per_day, round(cfg.prevalence * world.subscribers))
    kinds = list(cfg.kind_mix)
    w = np.array([cfg.kind_mix[k] for k in kinds], dtype=np.float64)
    grey = np.array(net.grey_carriers, dtype=np.int64) - 1
    victims = world.ids("ordinary")  # not roamers: the owner of a spoofed CLI is at home
    parts: list[Events] = []
    chosen = list(rng.choice(kinds, size=n_campaigns, p=w / w.sum()))
    # every kind with a positive weight runs at least once a day, so small runs see them all
    present = [k for k in kinds if cfg.kind_mix[k] > 0]
    if n_campaigns >= len(present):
        chosen[: len(present)] = present
    for kind_name in chosen:
        n = int(np.clip(np.rint(cfg.calls_per_campaign.sample(rng, 1)[0]), 5, cfg.max_calls_per_campaign))
        start_h = cfg.hours_local.low + rng.random() * cfg.hours_local.hours
        span_h = cfg.campaign_duration_min.sample(rng, 1)[0] / 60.0
        offsets = (rng.random(n) * span_h * HOUR_US).astype(np.int64)
        t_us = np.sort(local_hours_to_utc(day, np.full(n, start_h)) + offsets)
        kind = SPOOF_KINDS.index(str(kind_name))
        roaming = np.zeros(n, dtype=bool)
        if kind_name == "domestic_cli_not_roaming":
            # neighbour spoofing: each call shows another real subscriber's number
            a_num = world.number[rng.choice(victims, size=n)]
            roaming = rng.random(n) < cfg.stale_hlr_rate
        elif kind_name == "do_not_originate":
            a_num = np.full(n, rng.choice(world.dno_numbers))
        else:
            clis = random_numbers(rng, rng.choice(world.unallocated_prefixes, size=3), suffix_digits=7)
            a_num = clis[rng.integers(0, 3, size=n)]
        b_num = world.number[world.random_people(rng, n)]
        cause, ring_s, dur_s = outcomes(rng, n, cfg.release, cfg.duration_s, ring=net.ring_s)
        carrier = np.where(
            rng.random(n) < cfg.grey_route_share,
            rng.choice(grey, size=n),
            rng.integers(0, net.international_carriers, size=n),
        )
        parts.append(
            trunk_events(
                world,
                rng,
                caller=np.full(n, -1),
                a_num=a_num,
                b_num=b_num,
                t_us=t_us,
                cause=cause,
                ring_s=ring_s,
                dur_s=dur_s,
                trunk=GATEWAY,
                trunk_id=world.igw_trunk0 + carrier,
                roaming=roaming,
                spoof=kind,
            )
        )
    return Events.concat(parts)


def callback_probability_by_population(world: World) -> np.ndarray:
    cfg = world.config
    p = np.full(len(POPULATIONS), cfg.ordinary.callback_probability)
    for name in BUSINESS_POPULATIONS:
        p[POP[name]] = cfg.business(name).callback_probability
    p[POP["spam_robocall"]] = cfg.spam_robocall.callback_probability
    for name in SIMBOX_POPULATIONS:
        p[POP[name]] = getattr(cfg, name).callback_probability
    p[POP["wangiri"]] = cfg.wangiri.callback_probability
    return p


def gen_callbacks(world: World, day: Day, original: Events) -> Events:
    """People returning missed calls: reciprocity for friends, the costly call-back for Wangiri,
    almost nothing for robocallers and SIM boxes."""
    rng = day.rng("callbacks")
    cfg = world.config
    missed_weight = np.zeros(len(RELEASE_CAUSES))
    missed_weight[[NO_ANSWER, BUSY, CANCELLED]] = 1.0
    missed_weight[REJECTED] = 0.3
    callee = world.entity_of(original.b_num)
    candidate = (~original.sms) & (callee >= 0) & (callee < world.n_people) & (missed_weight[original.cause] > 0)
    idx = np.flatnonzero(candidate)
    if idx.size == 0:
        return Events.empty()
    orig_caller = original.caller[idx]
    p_pop = callback_probability_by_population(world)
    by_population = p_pop[world.population[np.maximum(orig_caller, 0)]]
    p = np.where(orig_caller >= 0, by_population, cfg.spoofing.callback_probability)
    p = p * missed_weight[original.cause[idx]]
    idx = idx[rng.random(idx.size) < p]
    n = idx.size
    if n == 0:
        return Events.empty()
    target_caller = original.caller[idx]
    target_pop = np.where(target_caller >= 0, world.population[np.maximum(target_caller, 0)], -1)
    delay = (cfg.ordinary.callback_delay_min.sample(rng, n) * 60 * US).astype(np.int64)
    t_us = original.t_us[idx] + 30 * US + delay
    b_num = original.a_num[idx]
    cause, ring_s, dur_s = outcomes(rng, n, cfg.ordinary.release, cfg.ordinary.duration_s, ring=cfg.network.ring_s)
    premium = target_pop == POP["wangiri"]
    if premium.any():
        # the premium line answers and keeps the victim on the line: that is the fraud
        m = int(premium.sum())
        cause[premium] = ANSWERED
        dur_s[premium] = np.maximum(1.0, np.rint(cfg.wangiri.callback_duration_s.sample(rng, m)))
    boxed = np.isin(target_pop, [POP["simbox"], POP["simbox_evasive"]])
    # a SIM box never picks up a call to one of its SIMs
    cause[boxed] = np.where(rng.random(int(boxed.sum())) < 0.5, NO_ANSWER, REJECTED)
    dur_s[boxed] = 0.0
    fail_unassigned(world, b_num, cause, dur_s)
    caller = callee[idx]
    keep = world.activity_start_us[caller] <= t_us
    return people_events(
        world,
        day,
        rng,
        caller=caller[keep],
        b_num=b_num[keep],
        t_us=t_us[keep],
        sms=np.zeros(int(keep.sum()), bool),
        cause=cause[keep],
        ring_s=ring_s[keep],
        dur_s=dur_s[keep],
    )


#: generators of one day, in a fixed order (names seed their random streams)
GENERATORS: tuple[str, ...] = (
    "people",
    *BUSINESS_POPULATIONS,
    "spam_robocall",
    *SIMBOX_POPULATIONS,
    "trunk",
    "wangiri",
    "spoofing",
)


def generate(world: World, day: Day, name: str) -> Events:
    if name == "people":
        return gen_people(world, day)
    if name in BUSINESS_POPULATIONS:
        return gen_business(world, day, name)
    if name == "spam_robocall":
        return gen_robocalls(world, day)
    if name in SIMBOX_POPULATIONS:
        return gen_simbox(world, day, name)
    if name == "trunk":
        return gen_trunk_callers(world, day)
    if name == "wangiri":
        return gen_wangiri(world, day)
    if name == "spoofing":
        return gen_spoofing(world, day)
    raise ValueError(f"unknown generator {name!r}")
