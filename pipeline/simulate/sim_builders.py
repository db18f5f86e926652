"""The SIM populations of the simulated world: people, businesses, SIM boxes, robocall
operations, each with a ``plan_*`` step (place the SIMs, ask for device models) and a
``finish_*`` step (hand out the IMEIs, draw the rest). :class:`Draft` is the world being built,
which :func:`pipeline.simulate.build.build_world` creates and calls them on in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.numbering import NumberingPlan
from pipeline.simulate.config import SimboxConfig, SimulatorConfig
from pipeline.simulate.graph import ContactGraph, build_contact_graph
from pipeline.simulate.numbers import NumberRanges
from pipeline.simulate.populations import (
    _MODULE_TACS,
    _PHONE_TACS,
    BUSINESS_POPULATIONS,
    DAY_US,
    HOUR_US,
    SIMBOX_POPULATIONS,
    US,
    BusinessGroups,
    Cells,
    RobocallOperation,
    SimBoxes,
    _exact_share,
    _group_sizes,
)


@dataclass
class Draft:
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


# -- people: ordinary subscribers and roamers ---------------------------------------------------


@dataclass
class People:
    graph: ContactGraph
    voice_rate: np.ndarray
    sms_rate: np.ndarray
    roamer_abroad: np.ndarray
    roamer_country: np.ndarray
    second: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    req_own: slice = field(default_factory=lambda: slice(0))
    req_second: slice = field(default_factory=lambda: slice(0))


def build_people(d: Draft) -> People:
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
    return People(graph, voice_rate, sms_rate, roamer_abroad, roamer_country)


def people_devices(d: Draft, people: People) -> None:
    """One phone each, and a second one for some."""
    people.req_own = d.request(d.phones(d.n_people))
    people.second = d.rng.random(d.n_people) < d.config.ordinary.second_device_share
    people.req_second = d.request(d.phones(int(people.second.sum())))


# -- businesses: call centres, telemarketers, drivers, dispatch, hotlines -----------------------


def plan_businesses(d: Draft) -> dict[str, dict[str, np.ndarray | slice]]:
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


def finish_businesses(
    d: Draft, plans: dict[str, dict[str, np.ndarray | slice]], imei: np.ndarray, imeis: np.ndarray
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


def plan_boxes(d: Draft, box_sizes: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray | slice]]:
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


def finish_boxes(
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


def plan_robocalls(d: Draft, chains: list[np.ndarray]) -> list[dict[str, object]]:
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


def finish_robocalls(
    d: Draft, plans: list[dict[str, object]], imei: np.ndarray, imeis: np.ndarray, number_blocks: np.ndarray
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
