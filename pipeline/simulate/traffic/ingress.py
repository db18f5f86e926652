"""Records by ingress: a SIM calling from home, a call handed over by another network, a
person at home or roaming.

Where the fields come from (DOMAIN.md, "What a CDR carries"):

* subscriber ingress (a SIM calls): ``operator`` is the SIM's home operator, ``a_imsi``,
  ``a_imei``, ``cell_id`` and ``lac`` are set, ``in_trunk_id`` is null;
* gateway and interconnect ingress: ``operator`` is the terminating operator (the callee's),
  ``a_imsi``/``a_imei``/``cell_id``/``lac`` are null, ``in_trunk_id`` names the trunk group;
  ``a_roaming`` on gateway records is the HLR's answer for a domestic CLI (a roamer calling home
  shows ``True``, with a small stale-data error);
* answered calls have ``answer_time = start_time + ring`` and a positive duration, all others
  a null answer time and duration 0; SMS are ``answered`` at submission with duration 0.
"""

from __future__ import annotations

import numpy as np

from pipeline.simulate.numbers import digit_count
from pipeline.simulate.populations import World
from pipeline.simulate.traffic.day import Day, local_hour
from pipeline.simulate.traffic.events import GATEWAY, NOT_SPOOFED, SUBSCRIBER, Events


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
