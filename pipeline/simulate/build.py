"""Building the :class:`~pipeline.simulate.populations.World`: one builder per population.

:func:`build_world` counts every population, then calls the builders in a fixed order. They all
draw from one random stream, so the order of the calls (and of the draws inside each) is part of
the output: a run with the same seed gives the same bytes (``tests/test_simulate.py``). Most
SIM populations are built in two steps because every IMEI is allocated at once (none may
collide): ``plan_*`` places the SIMs and asks for device models, ``finish_*`` hands out the IMEIs
and draws the rest (:mod:`pipeline.simulate.sim_builders`); the callers that are not subscribers
(fixed lines, PBX trunks, people abroad, Wangiri CLIs) are built here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from features.numbering import NumberingPlan
from pipeline.simulate.config import SimboxConfig, SimulatorConfig
from pipeline.simulate.numbers import NumberRanges, allocate_imeis, prefix_int, unique_random_numbers
from pipeline.simulate.populations import (
    BUSINESS_POPULATIONS,
    DAY_US,
    HOUR_US,
    POPULATIONS,
    SIMBOX_POPULATIONS,
    TRUNK_POPULATIONS,
    SimulationError,
    WangiriCampaign,
    World,
    _allocate_imsis,
    _allocate_mobile_numbers,
    _build_cells,
    _count,
    _label_noise,
    _shares,
)
from pipeline.simulate.sim_builders import (
    Draft,
    build_people,
    finish_boxes,
    finish_businesses,
    finish_robocalls,
    people_devices,
    plan_boxes,
    plan_businesses,
    plan_robocalls,
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


# -- callers that are not subscribers here ------------------------------------------------------


def _fixed_callers(d: Draft, dno: np.ndarray) -> None:
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


def _foreign_callers(d: Draft, premium: np.ndarray) -> None:
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
    d: Draft, counts: _Counts, premium: np.ndarray, number_blocks: np.ndarray
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
    d = Draft(
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
    people = build_people(d)
    d.draw_device_models()
    people_devices(d, people)
    business_plans = plan_businesses(d)
    box_plans = plan_boxes(d, counts.box_sizes)
    robo_plans = plan_robocalls(d, counts.chains)

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

    businesses = finish_businesses(d, business_plans, imei, imeis)
    boxes = finish_boxes(box_plans, imei, imeis)
    robocall_ops = finish_robocalls(d, robo_plans, imei, imeis, number_blocks)

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
