"""Legitimate businesses: outgoing calls and SMS, customers calling in."""

from __future__ import annotations

import numpy as np

from pipeline.simulate.populations import World
from pipeline.simulate.traffic.day import Day, fail_unassigned, local_hours_to_utc, outcomes, runs, sms_outcomes
from pipeline.simulate.traffic.events import Events
from pipeline.simulate.traffic.ingress import people_events, sim_events


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
