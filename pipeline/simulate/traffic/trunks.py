"""Traffic that enters on trunks: callers from other networks, Wangiri and spoofing campaigns."""

from __future__ import annotations

import numpy as np

from pipeline.simulate.config import SPOOF_KINDS
from pipeline.simulate.numbers import random_numbers
from pipeline.simulate.populations import HOUR_US, TRUNK_POPULATIONS, US, World
from pipeline.simulate.traffic.day import Day, local_hours_to_utc, outcomes, times_by_profile
from pipeline.simulate.traffic.events import ANSWERED, CANCELLED, FAILED, GATEWAY, INTERCONNECT, Events
from pipeline.simulate.traffic.ingress import trunk_events


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
