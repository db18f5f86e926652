"""People's traffic: ordinary subscribers and roamers calling, and missed calls returned."""

from __future__ import annotations

import numpy as np

from features.schema import RELEASE_CAUSES
from pipeline.simulate.numbers import random_numbers
from pipeline.simulate.populations import BUSINESS_POPULATIONS, POP, POPULATIONS, SIMBOX_POPULATIONS, US, World
from pipeline.simulate.traffic.day import Day, fail_unassigned, outcomes, sms_outcomes, times_by_profile
from pipeline.simulate.traffic.events import ANSWERED, BUSY, CANCELLED, NO_ANSWER, REJECTED, Events
from pipeline.simulate.traffic.ingress import people_events


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
    return _attempt_records(
        world, day, rng, caller=caller, b_num=b_num, t_us=t_us, sms=sms, cause=cause, ring_s=ring_s, dur_s=dur_s
    )


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
    sms = np.zeros(n, bool)
    return _attempt_records(
        world, day, rng, caller=callee[idx], b_num=b_num, t_us=t_us, sms=sms, cause=cause, ring_s=ring_s, dur_s=dur_s
    )


def _attempt_records(world: World, day: Day, rng: np.random.Generator, **columns: np.ndarray) -> Events:
    """People's attempts (``people_events`` columns) as records: a call to a number no SIM holds
    fails, and a SIM makes nothing before its activation."""
    fail_unassigned(world, columns["b_num"], columns["cause"], columns["dur_s"])
    keep = world.activity_start_us[columns["caller"]] <= columns["t_us"]
    return people_events(world, day, rng, **{name: values[keep] for name, values in columns.items()})
