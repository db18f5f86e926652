"""Fraud on SIMs: robocall operations and SIM boxes."""

from __future__ import annotations

import numpy as np

from pipeline.simulate.config import Lognormal, ReleaseMix
from pipeline.simulate.populations import US, World
from pipeline.simulate.traffic.day import Day, fail_unassigned, outcomes, runs, sms_outcomes, times_by_profile
from pipeline.simulate.traffic.events import Events
from pipeline.simulate.traffic.ingress import sim_events


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
