"""Building the :class:`~pipeline.simulate.populations.World`: one builder per population.

:func:`build_world` counts every population, then calls the builders in a fixed order. They all
draw from one random stream, so the order of the calls (and of the draws inside each) is part of
the output: a run with the same seed gives the same bytes (``tests/test_simulate.py``). Most
populations are built in two steps because every IMEI is allocated at once (none may collide):
``_plan_*`` places the SIMs and asks for device models, ``_finish_*`` hands out the IMEIs and
draws the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from features.numbering import NumberingPlan
from pipeline.simulate.config import SimboxConfig, SimulatorConfig
from pipeline.simulate.graph import ContactGraph, build_contact_graph
from pipeline.simulate.numbers import NumberRanges, allocate_imeis, prefix_int, unique_random_numbers
from pipeline.simulate.populations import (
    _MODULE_TACS,
    _PHONE_TACS,
    BUSINESS_POPULATIONS,
    DAY_US,
    HOUR_US,
    POPULATIONS,
    SIMBOX_POPULATIONS,
    TRUNK_POPULATIONS,
    US,
    BusinessGroups,
    Cells,
    RobocallOperation,
    SimBoxes,
    SimulationError,
    WangiriCampaign,
    World,
    _allocate_imsis,
    _allocate_mobile_numbers,
    _build_cells,
    _count,
    _exact_share,
    _group_sizes,
    _label_noise,
    _shares,
)


@dataclass
class _Counts:
    """How many of each population, and the random plans the counts come from."""

    counts: dict[str, int]
    box_sizes: dict[str, np.ndarray]
    #: per robocall operation: the boundaries (working seconds) of its successive SIMs
    chains: list[np.ndarray]
    campaigns_per_day: int
    clis_per_campaign: np.ndarray


@dataclass
class _Draft:
    """The world being built: one row per calling entity in each array, the random stream, the
    device requests and the next free group id. Every builder reads and fills it."""

    config: SimulatorConfig
    plan: NumberingPlan
    rng: np.random.Generator
    ranges: NumberRanges
    shares: np.ndarray
    days: int
    period_start_us: int
    slices: dict[str, slice]
    n_areas: int
    visited: np.ndarray
    cells: Cells
    operator: np.ndarray
    area: np.ndarray
    group: np.ndarray
    home_cell: np.ndarray
    work_cell: np.ndarray
    registered: np.ndarray
    activity: np.ndarray
    number: np.ndarray
    group_base: int = 0
    requests: list[np.ndarray] = field(default_factory=list)
    phone_tacs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    phone_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    module_tacs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_ops(self) -> int:
        return len(self.plan.operators)

    @property
    def n_sims(self) -> int:
        return self.slices["simbox_evasive"].stop

    @property
    def n_people(self) -> int:
        return self.slices["roamer"].stop

    def ids(self, population: str) -> np.ndarray:
        return np.arange(self.slices[population].start, self.slices[population].stop)

    def new_groups(self, k: int) -> int:
        """The first of ``k`` fresh group ids."""
        first = self.group_base
        self.group_base += k
        return first

    def draw_device_models(self) -> None:
        """The TACs phones and modules are bought from (phones: a few popular models)."""
        self.phone_tacs = 35_000_000 + self.rng.choice(999_999, size=_PHONE_TACS, replace=False)
        weights = 1.0 / np.arange(1, _PHONE_TACS + 1) ** 0.9
        self.phone_weights = weights / weights.sum()
        self.module_tacs = 86_000_000 + self.rng.choice(999_999, size=_MODULE_TACS, replace=False)

    def phones(self, k: int) -> np.ndarray:
        return self.rng.choice(self.phone_tacs, size=k, p=self.phone_weights)

    def modules(self, k: int) -> np.ndarray:
        return self.rng.choice(self.module_tacs, size=k)

    def request(self, tacs: np.ndarray) -> slice:
        """Ask for one IMEI per TAC; the slice is where they will be in the allocation."""
        start = sum(len(r) for r in self.requests)
        self.requests.append(np.asarray(tacs, dtype=np.int64))
        return slice(start, start + len(tacs))


# -- how many of each ---------------------------------------------------------------------------


def _count_populations(config: SimulatorConfig, rng: np.random.Generator, *, subscribers: int, days: int) -> _Counts:
    n_roamer = _count(config.roaming.prevalence, config.roaming.min_count, subscribers)
    business_counts = {
        p: _count(config.business(p).prevalence, config.business(p).min_count, subscribers)
        for p in BUSINESS_POPULATIONS
    }
    box_sizes: dict[str, np.ndarray] = {}
    for p in SIMBOX_POPULATIONS:
        cfg: SimboxConfig = getattr(config, p)
        n_boxes = max(cfg.min_boxes, round(cfg.prevalence * subscribers / cfg.cohort_size.mean))
        box_sizes[p] = cfg.cohort_size.sample(rng, n_boxes)
    chains = _robocall_chains(config, rng, subscribers=subscribers, days=days)
    n_robo = sum(len(b) - 1 for b in chains)

    sim_others = n_roamer + sum(business_counts.values()) + sum(int(s.sum()) for s in box_sizes.values()) + n_robo
    n_ordinary = subscribers - sim_others
    if n_ordinary < subscribers // 2:
        raise SimulationError(
            f"--subscribers {subscribers} is too small for the minimum population counts in the "
            f"simulator config ({sim_others} special SIMs); use at least {2 * sim_others}"
        )
    n_trunk = {
        p: _count(getattr(config, p).prevalence, getattr(config, p).min_count, subscribers) for p in TRUNK_POPULATIONS
    }
    wcfg = config.wangiri
    campaigns_per_day = max(wcfg.min_campaigns_per_day, round(wcfg.prevalence * subscribers))
    clis_per_campaign = wcfg.clis_per_campaign.sample(rng, campaigns_per_day * days)
    counts = {
        "ordinary": n_ordinary,
        "roamer": n_roamer,
        **business_counts,
        "spam_robocall": n_robo,
        "simbox": int(box_sizes["simbox"].sum()),
        "simbox_evasive": int(box_sizes["simbox_evasive"].sum()),
        **n_trunk,
        "wangiri": int(clis_per_campaign.sum()),
    }
    return _Counts(counts, box_sizes, chains, campaigns_per_day, clis_per_campaign)


def _robocall_chains(
    config: SimulatorConfig, rng: np.random.Generator, *, subscribers: int, days: int
) -> list[np.ndarray]:
    """Each operation burns SIMs one after another over its working hours: their boundaries."""
    robo = config.spam_robocall
    work_s = robo.hours_local.hours * 3600
    nominal_sims_per_op_day = robo.hours_local.hours / robo.sim_lifetime_h.median
    n_ops_robo = max(robo.min_operations, round(robo.prevalence * subscribers / nominal_sims_per_op_day))
    chains: list[np.ndarray] = []
    for _ in range(n_ops_robo):
        total = days * work_s
        first = rng.uniform(0, 0.15 * work_s)
        life = robo.sim_lifetime_h.sample(rng, int(days * nominal_sims_per_op_day * 2) + 4) * 3600
        while first + life.sum() < total:
            life = np.r_[life, robo.sim_lifetime_h.sample(rng, len(life)) * 3600]
        bounds = np.r_[0.0, first + np.cumsum(life)]
        last = int(np.searchsorted(bounds, total)) + 1
        chains.append(bounds[:last])
    return chains


# -- people: ordinary subscribers and roamers ---------------------------------------------------


@dataclass
class _People:
    graph: ContactGraph
    voice_rate: np.ndarray
    sms_rate: np.ndarray
    roamer_abroad: np.ndarray
    roamer_country: np.ndarray
    second: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    req_own: slice = field(default_factory=lambda: slice(0))
    req_second: slice = field(default_factory=lambda: slice(0))


def _build_people(d: _Draft) -> _People:
    rng, ocfg = d.rng, d.config.ordinary
    n_people = d.n_people
    people = np.arange(n_people)
    d.home_cell[people] = d.cells.pick(rng, d.operator[people], d.area[people])
    works = rng.random(n_people) < ocfg.work_cell_share
    work_area = rng.integers(0, d.n_areas, size=n_people)
    d.work_cell[people[works]] = d.cells.pick(rng, d.operator[people[works]], work_area[works])
    voice_rate = np.minimum(ocfg.voice_per_day.sample(rng, n_people), ocfg.max_per_day)
    sms_rate = np.minimum(ocfg.sms_per_day.sample(rng, n_people), ocfg.max_per_day)
    ten_years = 3650 * DAY_US
    d.activity[people] = d.period_start_us - DAY_US - (rng.random(n_people) * ten_years).astype(np.int64)
    fresh = rng.random(n_people) < ocfg.fresh_sim_share
    d.activity[people[fresh]] = d.period_start_us + (rng.random(int(fresh.sum())) * (d.days * DAY_US - HOUR_US)).astype(
        np.int64
    )
    graph = build_contact_graph(
        rng,
        area=d.area[people],
        contacts=ocfg.contacts,
        max_contacts=ocfg.max_contacts,
        local_share=ocfg.local_contact_share,
    )
    rcfg = d.config.roaming
    roamers = d.slices["roamer"]
    n_r = roamers.stop - roamers.start
    trip_start = np.where(rng.random(n_r) < rcfg.already_abroad_share, 0, rng.integers(0, d.days, size=n_r))
    trip_len = np.maximum(1, np.ceil(rcfg.trip_days.sample(rng, n_r))).astype(np.int64)
    day = np.arange(d.days)[:, None]
    roamer_abroad = (day >= trip_start[None, :]) & (day < (trip_start + trip_len)[None, :])
    roamer_country = rng.integers(0, len(d.visited), size=n_r)
    return _People(graph, voice_rate, sms_rate, roamer_abroad, roamer_country)


def _people_devices(d: _Draft, people: _People) -> None:
    """One phone each, and a second one for some."""
    people.req_own = d.request(d.phones(d.n_people))
    people.second = d.rng.random(d.n_people) < d.config.ordinary.second_device_share
    people.req_second = d.request(d.phones(int(people.second.sum())))


# -- businesses: call centres, telemarketers, drivers, dispatch, hotlines -----------------------


def _plan_businesses(d: _Draft) -> dict[str, dict[str, np.ndarray | slice]]:
    rng = d.rng
    plans: dict[str, dict[str, np.ndarray | slice]] = {}
    for p in BUSINESS_POPULATIONS:
        cfg_b = d.config.business(p)
        ids = d.ids(p)
        sizes = _group_sizes(rng, len(ids), cfg_b)
        g_local = np.repeat(np.arange(len(sizes)), sizes)
        g_op = rng.choice(d.n_ops, size=len(sizes), p=d.shares)
        g_area = rng.integers(0, d.n_areas, size=len(sizes))
        d.operator[ids] = g_op[g_local]
        d.area[ids] = g_area[g_local]
        g_cell = d.cells.pick(rng, g_op, g_area)
        d.home_cell[ids] = g_cell[g_local]
        d.group[ids] = d.new_groups(len(sizes)) + g_local
        d.registered[ids] = cfg_b.registered
        d.activity[ids] = d.period_start_us - DAY_US * (30 + rng.integers(0, 8 * 365, size=len(ids)))
        gateway = _exact_share(rng, len(sizes), cfg_b.gsm_gateway_share)
        pool_len = np.where(gateway, cfg_b.gateway_imeis.sample(rng, len(sizes)), 0)
        plans[p] = {
            "ids": ids,
            "g_local": g_local,
            "g_cell": g_cell,
            "auto": _exact_share(rng, len(sizes), cfg_b.auto_dialler_share),
            "pool_len": pool_len,
            "req_own": d.request(d.phones(len(ids))),
            "req_pool": d.request(d.modules(int(pool_len.sum()))),
        }
    return plans


def _finish_businesses(
    d: _Draft, plans: dict[str, dict[str, np.ndarray | slice]], imei: np.ndarray, imeis: np.ndarray
) -> dict[str, BusinessGroups]:
    rng, n_people = d.rng, d.n_people
    out: dict[str, BusinessGroups] = {}
    for p, bp in plans.items():
        cfg_b = d.config.business(p)
        ids = bp["ids"]
        assert isinstance(ids, np.ndarray)
        imei[ids] = imeis[bp["req_own"]]
        pool_len = np.asarray(bp["pool_len"])
        n_groups = len(pool_len)
        fleet = (
            rng.integers(0, n_people, size=(n_groups, max(1, cfg_b.fleet_size)))
            if cfg_b.callees == "fleet"
            else np.zeros((n_groups, 1), dtype=np.int64)
        )
        out[p] = BusinessGroups(
            sims=ids,
            group=np.asarray(bp["g_local"]),
            out_rate=cfg_b.outgoing_per_hour.sample(rng, len(ids)),
            answer_factor=np.exp(cfg_b.answer_spread * rng.standard_normal(len(ids))),
            duration_factor=np.exp(cfg_b.duration_spread * rng.standard_normal(len(ids))),
            incoming_rate=cfg_b.incoming_per_day.sample(rng, len(ids)),
            group_cell=np.asarray(bp["g_cell"]),
            group_auto_dialler=np.asarray(bp["auto"]),
            pool_start=np.r_[0, np.cumsum(pool_len)[:-1]].astype(np.int64),
            pool_len=pool_len,
            pool=imeis[bp["req_pool"]],
            fleet=fleet,
            lead_cursor=rng.integers(0, n_people, size=len(ids)),
        )
    return out


# -- SIM boxes ----------------------------------------------------------------------------------


def _plan_boxes(d: _Draft, box_sizes: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray | slice]]:
    rng = d.rng
    plans: dict[str, dict[str, np.ndarray | slice]] = {}
    for p in SIMBOX_POPULATIONS:
        cfg_s: SimboxConfig = getattr(d.config, p)
        ids = d.ids(p)
        sizes = box_sizes[p]
        b_local = np.repeat(np.arange(len(sizes)), sizes)
        b_op = rng.choice(d.n_ops, size=len(sizes), p=d.shares)
        b_area = rng.integers(0, d.n_areas, size=len(sizes))
        d.operator[ids] = b_op[b_local]
        d.area[ids] = b_area[b_local]
        b_cell_k = rng.integers(0, 10**6, size=len(sizes))
        d.group[ids] = d.new_groups(len(sizes)) + b_local
        before = cfg_s.activation_days_before.sample(rng, len(ids))
        d.activity[ids] = d.period_start_us - before * DAY_US - rng.integers(0, DAY_US, size=len(ids))
        if cfg_s.imeis_per_box is not None:
            pool_len = cfg_s.imeis_per_box.sample(rng, len(sizes))
            req_pool = d.request(d.modules(int(pool_len.sum())))
            req_own = d.request(np.zeros(0, dtype=np.int64))
        else:
            pool_len = np.zeros(len(sizes), dtype=np.int64)
            req_pool = d.request(np.zeros(0, dtype=np.int64))
            # evasive tooling imitates phones, but one box buys one model
            req_own = d.request(np.repeat(d.phones(len(sizes)), sizes))
        n_cells_sim = cfg_s.cells_per_sim.sample(rng, len(ids))
        width = int(cfg_s.cells_per_sim.high)
        # cell 0 is the rack's cell; the others are random cells of the same area
        k = np.c_[b_cell_k[b_local], rng.integers(0, 10**6, size=(len(ids), max(0, width - 1)))]
        sim_cells = d.cells.nth(
            np.repeat(d.operator[ids][:, None], width, axis=1),
            np.repeat(d.area[ids][:, None], width, axis=1),
            k[:, :width],
        )
        d.home_cell[ids] = sim_cells[:, 0]
        plans[p] = {
            "ids": ids,
            "b_local": b_local,
            "sizes": sizes,
            "pool_len": pool_len,
            "req_pool": req_pool,
            "req_own": req_own,
            "cells": sim_cells,
            "n_cells": n_cells_sim,
            "rate": cfg_s.calls_per_sim_per_hour.sample(rng, len(ids)),
        }
    return plans


def _finish_boxes(
    plans: dict[str, dict[str, np.ndarray | slice]], imei: np.ndarray, imeis: np.ndarray
) -> dict[str, SimBoxes]:
    out: dict[str, SimBoxes] = {}
    for p, bx in plans.items():
        ids = bx["ids"]
        assert isinstance(ids, np.ndarray)
        pool_len = np.asarray(bx["pool_len"])
        pool = imeis[bx["req_pool"]]
        own = imeis[bx["req_own"]]
        b_local = np.asarray(bx["b_local"])
        pool_start = np.r_[0, np.cumsum(pool_len)[:-1]].astype(np.int64)
        if own.size:
            imei[ids] = own
        else:
            imei[ids] = pool[pool_start[b_local] + (np.arange(len(ids)) % np.maximum(pool_len[b_local], 1))]
        sizes = np.asarray(bx["sizes"])
        out[p] = SimBoxes(
            sims=ids,
            box=b_local,
            rate=np.asarray(bx["rate"]),
            cells=np.asarray(bx["cells"]),
            n_cells=np.asarray(bx["n_cells"]),
            pool_start=pool_start,
            pool_len=pool_len,
            pool=pool,
            box_sims_start=np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64),
            box_sims_len=sizes,
        )
    return out


# -- robocall operations ------------------------------------------------------------------------


def _plan_robocalls(d: _Draft, chains: list[np.ndarray]) -> list[dict[str, object]]:
    rng, robo = d.rng, d.config.spam_robocall
    work_s = robo.hours_local.hours * 3600
    robo_ids = d.ids("spam_robocall")
    plans: list[dict[str, object]] = []
    at = 0
    start_utc_s = ((robo.hours_local.low - d.config.network.utc_offset_hours) % 24) * 3600
    for bounds in chains:
        k = len(bounds) - 1
        sims = robo_ids[at : at + k]
        at += k
        op = int(rng.choice(d.n_ops, p=d.shares))
        op_area = int(rng.integers(0, d.n_areas))
        d.operator[sims] = op
        d.area[sims] = op_area
        n_dev = int(robo.devices_per_operation.sample(rng, 1)[0]) or 1
        n_cell = int(robo.cells_per_operation.sample(rng, 1)[0]) or 1
        op_cells = d.cells.pick(rng, np.full(n_cell, op), np.full(n_cell, op_area))
        d.home_cell[sims] = op_cells[0]
        d.group[sims] = d.new_groups(1)
        # the first call of each SIM, in UTC, minus the lead between activation and first use
        tau = bounds[:-1]
        first_call = (
            d.period_start_us
            + (tau // work_s).astype(np.int64) * DAY_US
            + int(start_utc_s * US)
            + ((tau % work_s) * US).astype(np.int64)
        )
        lead = (robo.activation_lead_h.sample(rng, k) * HOUR_US).astype(np.int64)
        d.activity[sims] = np.maximum(d.period_start_us, first_call - lead)
        tac = d.phones(n_dev) if rng.random() < 0.5 else d.modules(n_dev)
        plans.append({"sims": sims, "bounds": bounds, "op": op, "cells": op_cells, "req_dev": d.request(tac)})
    return plans


def _finish_robocalls(
    d: _Draft, plans: list[dict[str, object]], imei: np.ndarray, imeis: np.ndarray, number_blocks: np.ndarray
) -> list[RobocallOperation]:
    rng, robo, n_people = d.rng, d.config.spam_robocall, d.n_people
    out: list[RobocallOperation] = []
    for rp in plans:
        sims = np.asarray(rp["sims"])
        devices = imeis[rp["req_dev"]]  # type: ignore[index]
        imei[sims] = devices[np.arange(len(sims)) % len(devices)]
        sequential = bool(rng.random() < robo.sequential_share)
        if sequential:
            block = number_blocks[int(rng.integers(0, len(number_blocks)))]
            dial_start, dial_span = int(block[0]), int(block[1])
            dial_start += int(rng.integers(0, max(1, dial_span // 2)))
            dial_span = int(block[0]) + int(block[1]) - dial_start
        else:
            dial_start, dial_span = int(rng.integers(0, n_people)), n_people
        out.append(
            RobocallOperation(
                sims=sims,
                bounds_s=np.asarray(rp["bounds"]),
                interval_s=float(robo.call_interval_s.sample(rng, 1)[0]),
                jitter=float(rng.uniform(robo.interval_jitter.low, robo.interval_jitter.high)),
                sequential=sequential,
                dial_start=dial_start,
                dial_span=dial_span,
                devices=devices,
                cells=np.asarray(rp["cells"]),
                answer_factor=float(np.exp(robo.answer_spread * rng.standard_normal())),
                duration_factor=float(np.exp(robo.duration_spread * rng.standard_normal())),
            )
        )
    return out


# -- callers that are not subscribers here ------------------------------------------------------


def _fixed_callers(d: _Draft, dno: np.ndarray) -> None:
    """Enterprise PBX trunks and fixed lines: numbers from the fixed-line ranges."""
    rng, plan, n_sims = d.rng, d.plan, d.n_sims
    fixed_ops = [o for o, op in enumerate(plan.operators) if plan.fixed_prefixes(op)]
    fixed_prefixes = [(o, pfx) for o in fixed_ops for pfx in d.ranges.fixed_prefixes(plan.operators[o])]
    if not fixed_prefixes:
        raise SimulationError("the numbering plan has no fixed-line prefixes for fixed callers")
    fixed_total = len(plan.country_code) + plan.fixed_nsn_length
    for p in ("enterprise_trunk", "fixed_line"):
        ids = d.ids(p)
        pick = rng.integers(0, len(fixed_prefixes), size=len(ids))
        pfx = np.array([fixed_prefixes[i][1] for i in pick], dtype=np.int64)
        digits = fixed_total - np.array([len(str(x)) for x in pfx], dtype=np.int64)
        d.operator[ids] = np.array([fixed_prefixes[i][0] for i in pick], dtype=np.int8)
        d.number[ids] = unique_random_numbers(rng, pfx, suffix_digits=digits, exclude=np.r_[dno, d.number[:n_sims]])
        d.area[ids] = rng.integers(0, d.n_areas, size=len(ids))
        d.registered[ids] = getattr(d.config, p).registered
        if p == "enterprise_trunk":
            # each PBX is its own business (the allowlist keys on it)
            d.group[ids] = d.new_groups(len(ids)) + np.arange(len(ids))
        d.activity[ids] = d.period_start_us - DAY_US * (30 + rng.integers(0, 8 * 365, size=len(ids)))


def _foreign_callers(d: _Draft, premium: np.ndarray) -> None:
    rng = d.rng
    ids = d.ids("foreign_caller")
    # some legitimate callers come from countries on the premium-rate list: a premium CLI alone
    # does not make a call Wangiri
    share = d.config.foreign_caller.premium_country_share
    n_premium = max(1, round(share * len(ids))) if share > 0 else 0
    use_premium = np.zeros(len(ids), dtype=bool)
    use_premium[rng.choice(len(ids), size=min(n_premium, len(ids)), replace=False)] = True
    cc = np.where(use_premium, rng.choice(premium, size=len(ids)), rng.choice(d.visited, size=len(ids)))
    d.number[ids] = unique_random_numbers(rng, cc, suffix_digits=9)
    d.activity[ids] = d.period_start_us - DAY_US * rng.integers(1, 3650, size=len(ids))


# -- Wangiri campaigns --------------------------------------------------------------------------


def _wangiri_campaigns(
    d: _Draft, counts: _Counts, premium: np.ndarray, number_blocks: np.ndarray
) -> list[WangiriCampaign]:
    rng, wcfg = d.rng, d.config.wangiri
    w_ids = d.ids("wangiri")
    w_cc = rng.choice(premium, size=len(w_ids))
    d.number[w_ids] = unique_random_numbers(rng, w_cc, suffix_digits=8, exclude=d.number[d.ids("foreign_caller")])
    campaigns: list[WangiriCampaign] = []
    d.new_groups(1)
    block_first, block_span = number_blocks[:, 0], number_blocks[:, 1]
    at = 0
    for c, n_clis in enumerate(counts.clis_per_campaign):
        day = c // counts.campaigns_per_day
        clis = w_ids[at : at + n_clis]
        at += n_clis
        start_us = d.period_start_us + day * DAY_US + int(rng.integers(0, DAY_US - HOUR_US))
        d.activity[clis] = start_us
        d.group[clis] = d.group_base + c
        n_calls = int(wcfg.calls_per_campaign.sample(rng, 1)[0])
        # the sweep runs through a range where operators have assigned numbers
        fits = np.where(block_span >= n_calls, block_span, 0).astype(np.float64)
        weights = fits if fits.sum() > 0 else block_span.astype(np.float64)
        b = int(rng.choice(len(block_span), p=weights / weights.sum()))
        room = max(1, int(block_span[b]) - n_calls)
        campaigns.append(
            WangiriCampaign(
                day=day,
                start_us=start_us,
                clis=clis,
                n_calls=n_calls,
                interval_s=float(wcfg.call_interval_s.sample(rng, 1)[0]),
                first_number=int(block_first[b]) + int(rng.integers(0, room)),
                carrier=int(rng.integers(0, d.config.network.international_carriers)),
            )
        )
    return campaigns


def _service_numbers(rng: np.random.Generator, plan: NumberingPlan) -> np.ndarray:
    """Numbers people dial that are not people: hotlines (the DNO list only receives calls),
    toll-free and 1900 services, and now and then an emergency number."""
    service = [prefix_int(x) for x in sorted(plan.do_not_originate)]
    for pfx in plan.toll_free_prefixes + plan.premium_prefixes:
        service += [prefix_int(pfx) * 10_000 + int(v) for v in rng.integers(1000, 9999, size=6)]
    service += [int(f"{plan.country_code}{code}") for code in list(plan.emergency_numbers)[:2]]
    return np.array(service, dtype=np.int64)


# -- the whole world ----------------------------------------------------------------------------


def build_world(config: SimulatorConfig, *, subscribers: int, days: int, seed: int, plan: NumberingPlan) -> World:
    """Everything static about the simulated network (deterministic in ``seed``)."""
    if subscribers < 200:
        raise SimulationError("--subscribers must be at least 200")
    if days < 1:
        raise SimulationError("--days must be at least 1")
    # the network's own stream; each day's traffic draws from streams keyed by (seed, day, name)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    net = config.network
    shares = _shares(config, plan)
    counts = _count_populations(config, rng, subscribers=subscribers, days=days)
    slices: dict[str, slice] = {}
    at = 0
    for p in POPULATIONS:
        slices[p] = slice(at, at + counts.counts[p])
        at += counts.counts[p]
    n = at
    population = np.repeat(np.arange(len(POPULATIONS), dtype=np.int8), [counts.counts[p] for p in POPULATIONS])

    n_areas = max(2, math.ceil(subscribers / net.subscribers_per_area))
    visited = np.array([prefix_int(p) for p in plan.common_international_prefixes], dtype=np.int64)
    if visited.size == 0:
        raise SimulationError("the numbering plan lists no common_international_prefixes for roaming")
    d = _Draft(
        config=config,
        plan=plan,
        rng=rng,
        ranges=NumberRanges(plan),
        shares=shares,
        days=days,
        period_start_us=int(np.datetime64(net.start_date.isoformat(), "us").astype(np.int64)),
        slices=slices,
        n_areas=n_areas,
        visited=visited,
        cells=_build_cells(config, plan, shares, subscribers=subscribers, n_areas=n_areas, visited=visited),
        operator=np.full(n, -1, dtype=np.int8),
        area=np.full(n, -1, dtype=np.int32),
        group=np.full(n, -1, dtype=np.int32),
        home_cell=np.full(n, -1, dtype=np.int32),
        work_cell=np.full(n, -1, dtype=np.int32),
        registered=np.zeros(n, dtype=bool),
        activity=np.zeros(n, dtype=np.int64),
        number=np.zeros(n, dtype=np.int64),
    )
    n_sims, n_people = d.n_sims, d.n_people
    d.operator[:n_sims] = rng.choice(d.n_ops, size=n_sims, p=shares)
    d.area[:n_sims] = rng.integers(0, n_areas, size=n_sims)

    # SIM populations first (homes, groups, device models), then every IMEI at once
    people = _build_people(d)
    d.draw_device_models()
    _people_devices(d, people)
    business_plans = _plan_businesses(d)
    box_plans = _plan_boxes(d, counts.box_sizes)
    robo_plans = _plan_robocalls(d, counts.chains)

    d.number[:n_sims], number_blocks = _allocate_mobile_numbers(rng, d.ranges, config, d.operator[:n_sims])
    imsi = np.full(n, -1, dtype=np.int64)
    imsi[:n_sims] = _allocate_imsis(rng, plan, d.operator[:n_sims])
    imeis = allocate_imeis(rng, np.concatenate(d.requests)) if d.requests else np.zeros(0, np.int64)
    imei = np.full(n, -1, dtype=np.int64)
    imei[:n_people] = imeis[people.req_own]
    second_imei = np.full(n_people, -1, dtype=np.int64)
    second_imei[people.second] = imeis[people.req_second]

    dno = np.array(sorted(prefix_int(x) for x in plan.do_not_originate), dtype=np.int64)
    _fixed_callers(d, dno)
    premium = np.array([prefix_int(x) for x in plan.international_premium_prefixes], dtype=np.int64)
    if premium.size == 0:
        raise SimulationError("the numbering plan lists no international_premium_prefixes for Wangiri")
    _foreign_callers(d, premium)
    campaigns = _wangiri_campaigns(d, counts, premium, number_blocks)

    businesses = _finish_businesses(d, business_plans, imei, imeis)
    boxes = _finish_boxes(box_plans, imei, imeis)
    robocall_ops = _finish_robocalls(d, robo_plans, imei, imeis, number_blocks)

    trunk_rate = np.zeros(n, dtype=np.float64)
    for p in TRUNK_POPULATIONS:
        s = slices[p]
        trunk_rate[s] = getattr(config, p).calls_per_day.sample(rng, s.stop - s.start)
    label, noise = _label_noise(rng, population, config.labels.noise_rate)
    service = _service_numbers(rng, plan)
    trunk_names = [f"igw-{c + 1:02d}" for c in range(net.international_carriers)]
    trunk_names += [f"dic-{op}" for op in plan.operators]
    everyone = np.arange(n_people)

    return World(
        config=config,
        plan=plan,
        ranges=d.ranges,
        subscribers=subscribers,
        days=days,
        seed=seed,
        period_start_us=d.period_start_us,
        operators=plan.operators,
        number=d.number,
        imsi=imsi,
        imei=imei,
        operator=d.operator,
        population=population,
        group=d.group,
        area=d.area,
        home_cell=d.home_cell,
        work_cell=d.work_cell,
        activity_start_us=d.activity,
        registered=d.registered,
        label=label,
        slices=slices,
        graph=people.graph,
        voice_rate=people.voice_rate,
        sms_rate=people.sms_rate,
        second_imei=second_imei,
        people_by_op=[np.flatnonzero(d.operator[:n_people] == o) for o in range(d.n_ops)],
        lead_list=everyone[np.argsort(d.number[everyone], kind="stable")],
        roamer_abroad=people.roamer_abroad,
        roamer_country=people.roamer_country,
        visited_prefixes=visited,
        cells=d.cells,
        businesses=businesses,
        boxes=boxes,
        robocall_ops=robocall_ops,
        wangiri_campaigns=campaigns,
        trunk_rate=trunk_rate,
        number_blocks=number_blocks,
        unallocated_prefixes=np.array(d.ranges.unallocated_prefixes(), dtype=np.int64),
        service_numbers=service,
        dno_numbers=dno,
        trunk_names=trunk_names,
        igw_trunk0=0,
        dic_trunk0=net.international_carriers,
        label_noise=noise,
    )
