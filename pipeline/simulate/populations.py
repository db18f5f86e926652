"""The synthetic network before any call: who exists, with which numbers, devices and cells.

:func:`build_world` turns (config, subscribers, days, seed) into a :class:`World`: one row per
calling entity (SIMs, enterprise PBXs, fixed lines, people abroad, Wangiri CLIs) in numpy arrays,
the cells, the social graph, the roaming trips, and the plans of every business, SIM box,
robocall operation and Wangiri campaign. Daily traffic (``traffic``) only reads it.

Populations and their labels::

    ordinary, roamer, call_centre, telemarketer, delivery_driver, taxi_dispatch,
    business_hotline, enterprise_trunk, fixed_line, foreign_caller     -> normal
    spam_robocall                                                      -> spam_robocall
    simbox, simbox_evasive                                             -> simbox
    wangiri                                                            -> wangiri

``--subscribers N`` counts the mobile SIMs of the simulated base: every SIM population is carved
out of it and ordinary subscribers are the remainder. Callers that are not subscribers here
(fixed lines, PBX trunks, people abroad, Wangiri CLIs) come on top, scaled by N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from features.errors import SimGuardError
from features.numbering import NumberingPlan
from pipeline.simulate.config import BusinessConfig, SimboxConfig, SimulatorConfig
from pipeline.simulate.graph import ContactGraph, build_contact_graph
from pipeline.simulate.numbers import (
    NumberRanges,
    allocate_imeis,
    prefix_int,
    unique_random_numbers,
)


class SimulationError(SimGuardError):
    """The simulation cannot run with these parameters."""


POPULATIONS: tuple[str, ...] = (
    "ordinary",
    "roamer",
    "call_centre",
    "telemarketer",
    "delivery_driver",
    "taxi_dispatch",
    "business_hotline",
    "spam_robocall",
    "simbox",
    "simbox_evasive",
    "enterprise_trunk",
    "fixed_line",
    "foreign_caller",
    "wangiri",
)
POP = {name: i for i, name in enumerate(POPULATIONS)}
PEOPLE_POPULATIONS: tuple[str, ...] = ("ordinary", "roamer")
BUSINESS_POPULATIONS: tuple[str, ...] = (
    "call_centre",
    "telemarketer",
    "delivery_driver",
    "taxi_dispatch",
    "business_hotline",
)
SIMBOX_POPULATIONS: tuple[str, ...] = ("simbox", "simbox_evasive")
TRUNK_POPULATIONS: tuple[str, ...] = ("enterprise_trunk", "fixed_line", "foreign_caller")
SIM_POPULATIONS: tuple[str, ...] = POPULATIONS[:10]

LABELS: tuple[str, ...] = ("normal", "spam_robocall", "simbox", "wangiri")
POPULATION_LABEL: dict[str, str] = {
    **{p: "normal" for p in POPULATIONS},
    "spam_robocall": "spam_robocall",
    "simbox": "simbox",
    "simbox_evasive": "simbox",
    "wangiri": "wangiri",
}
#: where investigators' mistakes come from: look-alikes taken for each kind of fraud
NOISE_LOOKALIKES: dict[str, tuple[str, ...]] = {
    "spam_robocall": ("call_centre", "telemarketer", "delivery_driver"),
    "simbox": ("call_centre", "taxi_dispatch", "business_hotline"),
    "wangiri": ("foreign_caller",),
}

US = 1_000_000
DAY_US = 86_400 * US
HOUR_US = 3_600 * US

#: mobile country codes of the countries roamers visit (their visited cells' CGI prefix)
_VISITED_MCC = {1: 310, 33: 208, 44: 234, 49: 262, 61: 505, 65: 525, 66: 520, 81: 440, 82: 450, 86: 460}
_PHONE_TACS = 300
_MODULE_TACS = 6


@dataclass(frozen=True)
class Cells:
    """Serving cells: per operator and area a few cells, grouped in LACs; plus visited cells."""

    cell_id: list[str]
    lac: list[str]
    operator: np.ndarray
    area: np.ndarray
    #: first cell and cell count for each (operator, area)
    start: np.ndarray
    count: np.ndarray
    #: first visited cell and count per visited country (index into the roaming countries)
    visited_start: np.ndarray
    visited_count: np.ndarray

    def pick(self, rng: np.random.Generator, op: np.ndarray, area: np.ndarray) -> np.ndarray:
        """One random cell of each (operator, area)."""
        n = self.count[op, area]
        return (self.start[op, area] + (rng.random(len(op)) * n).astype(np.int64)).astype(np.int32)

    def nth(self, op: np.ndarray, area: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The ``k``-th cell (mod count) of each (operator, area): stable per-entity cell sets."""
        return (self.start[op, area] + k % self.count[op, area]).astype(np.int32)


@dataclass(frozen=True)
class BusinessGroups:
    """Businesses of one population: per SIM and per business (group) parameters."""

    sims: np.ndarray  # entity ids
    group: np.ndarray  # group per SIM (0-based within the population)
    out_rate: np.ndarray  # calls per working hour
    answer_factor: np.ndarray
    duration_factor: np.ndarray
    incoming_rate: np.ndarray  # per day
    group_cell: np.ndarray
    group_auto_dialler: np.ndarray
    #: IMEIs of each group's GSM gateway (flat) with offsets; empty pool: own phones
    pool_start: np.ndarray
    pool_len: np.ndarray
    pool: np.ndarray
    #: taxi fleets: people entity ids, shape (groups, fleet_size)
    fleet: np.ndarray
    lead_cursor: np.ndarray  # per SIM: start in the sorted lead list


@dataclass(frozen=True)
class SimBoxes:
    sims: np.ndarray
    box: np.ndarray  # box per SIM (0-based within the population)
    rate: np.ndarray  # calls per hour
    #: per SIM up to ``cells.shape[1]`` cells, ``n_cells`` of them used
    cells: np.ndarray
    n_cells: np.ndarray
    pool_start: np.ndarray  # per box
    pool_len: np.ndarray
    pool: np.ndarray
    box_sims_start: np.ndarray  # per box: first SIM position in ``sims``
    box_sims_len: np.ndarray


@dataclass(frozen=True)
class RobocallOperation:
    sims: np.ndarray  # entity ids in rotation order
    bounds_s: np.ndarray  # work-time seconds at which each SIM takes over (len(sims) + 1)
    interval_s: float
    jitter: float
    sequential: bool
    dial_start: int  # sequential: first number; list: index into the sorted people numbers
    dial_span: int  # sequential: numbers in the target block
    devices: np.ndarray
    cells: np.ndarray
    answer_factor: float
    duration_factor: float


@dataclass(frozen=True)
class WangiriCampaign:
    day: int
    start_us: int
    clis: np.ndarray  # entity ids
    n_calls: int
    interval_s: float
    first_number: int
    carrier: int


@dataclass
class World:
    config: SimulatorConfig
    plan: NumberingPlan
    ranges: NumberRanges
    subscribers: int
    days: int
    seed: int
    period_start_us: int
    operators: tuple[str, ...]
    # --- entities ------------------------------------------------------------------------
    number: np.ndarray
    imsi: np.ndarray
    imei: np.ndarray
    operator: np.ndarray
    population: np.ndarray
    group: np.ndarray
    area: np.ndarray
    home_cell: np.ndarray
    work_cell: np.ndarray
    activity_start_us: np.ndarray
    registered: np.ndarray
    label: np.ndarray
    slices: dict[str, slice]
    # --- people --------------------------------------------------------------------------
    graph: ContactGraph
    voice_rate: np.ndarray
    sms_rate: np.ndarray
    second_imei: np.ndarray
    people_by_op: list[np.ndarray]
    lead_list: np.ndarray  # people entity ids sorted by number
    roamer_abroad: np.ndarray  # (days, roamers) bool
    roamer_country: np.ndarray  # index into ``visited_prefixes``
    visited_prefixes: np.ndarray
    # --- everybody else -------------------------------------------------------------------
    cells: Cells
    businesses: dict[str, BusinessGroups]
    boxes: dict[str, SimBoxes]
    robocall_ops: list[RobocallOperation]
    wangiri_campaigns: list[WangiriCampaign]
    trunk_rate: np.ndarray  # per entity calls per day (trunk populations)
    number_blocks: np.ndarray  # (blocks, 3): first number, span, operator
    unallocated_prefixes: np.ndarray
    service_numbers: np.ndarray
    dno_numbers: np.ndarray
    trunk_names: list[str]
    igw_trunk0: int
    dic_trunk0: int
    # --- look-ups ------------------------------------------------------------------------
    sorted_numbers: np.ndarray = field(init=False)
    sorted_entities: np.ndarray = field(init=False)
    sorted_sim_numbers: np.ndarray = field(init=False)
    label_noise: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        order = np.argsort(self.number, kind="stable")
        self.sorted_numbers = self.number[order]
        self.sorted_entities = order
        sims = self.imsi >= 0
        self.sorted_sim_numbers = np.sort(self.number[sims])

    # -- look-ups used by traffic --------------------------------------------------------
    @property
    def n_entities(self) -> int:
        return len(self.number)

    @property
    def n_people(self) -> int:
        return self.slices["roamer"].stop

    def ids(self, population: str) -> np.ndarray:
        s = self.slices[population]
        return np.arange(s.start, s.stop)

    def entity_of(self, numbers: np.ndarray) -> np.ndarray:
        """Entity id of each number, -1 when nobody here has it."""
        pos = np.clip(np.searchsorted(self.sorted_numbers, numbers), 0, len(self.sorted_numbers) - 1)
        hit = self.sorted_numbers[pos] == numbers
        return np.where(hit, self.sorted_entities[pos], -1)

    def unassigned_mobile(self, numbers: np.ndarray) -> np.ndarray:
        """Numbers in a mobile range that no SIM has: calls to them fail."""
        pos = np.clip(np.searchsorted(self.sorted_sim_numbers, numbers), 0, len(self.sorted_sim_numbers) - 1)
        assigned = self.sorted_sim_numbers[pos] == numbers
        return ~assigned & self.ranges.is_mobile(numbers)

    def abroad(self, day: int, entities: np.ndarray) -> np.ndarray:
        """Whether each entity is a roamer abroad on ``day``."""
        rs = self.slices["roamer"]
        inside = (entities >= rs.start) & (entities < rs.stop)
        out = np.zeros(len(entities), dtype=bool)
        out[inside] = self.roamer_abroad[day, entities[inside] - rs.start]
        return out

    @property
    def clean_carriers(self) -> np.ndarray:
        """0-based international carriers that are not grey routes."""
        net = self.config.network
        grey = np.array(net.grey_carriers, dtype=np.int64) - 1
        return np.setdiff1d(np.arange(net.international_carriers), grey)

    def day_start_us(self, day: int) -> int:
        return self.period_start_us + day * DAY_US

    def random_people(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.integers(0, self.n_people, size=size)


# --------------------------------------------------------------------------------------------
# building blocks


def _shares(config: SimulatorConfig, plan: NumberingPlan) -> np.ndarray:
    shares = config.network.operator_share
    unknown = set(shares) - set(plan.operators)
    if unknown:
        raise SimulationError(
            f"network.operator_share names operators {sorted(unknown)} that the numbering plan "
            f"does not have ({', '.join(plan.operators)})"
        )
    w = np.array([shares.get(op, 0.0) for op in plan.operators], dtype=np.float64)
    return w / w.sum()


def _count(prevalence: float, minimum: int, subscribers: int) -> int:
    return max(minimum, round(prevalence * subscribers))


def _exact_share(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """``round(share * n)`` randomly chosen members (at least one when ``share > 0``), so that
    small runs still contain a rare kind of business."""
    k = min(n, max(1 if share > 0 else 0, round(share * n)))
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=k, replace=False)] = True
    return mask


def _group_sizes(rng: np.random.Generator, total: int, cfg: BusinessConfig) -> np.ndarray:
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(cfg.group_size.sample(rng, 1)[0]) or 1)
    sizes[-1] -= sum(sizes) - total
    return np.array([s for s in sizes if s > 0], dtype=np.int64)


def _build_cells(
    config: SimulatorConfig,
    plan: NumberingPlan,
    shares: np.ndarray,
    *,
    subscribers: int,
    n_areas: int,
    visited: np.ndarray,
) -> Cells:
    net = config.network
    n_ops = len(plan.operators)
    start = np.zeros((n_ops, n_areas), dtype=np.int64)
    count = np.zeros((n_ops, n_areas), dtype=np.int64)
    ids: list[str] = []
    lacs: list[str] = []
    cell_op: list[int] = []
    cell_area: list[int] = []
    for o, op in enumerate(plan.operators):
        mccmnc = plan.imsi_prefix(op)
        per_area = subscribers * shares[o] / n_areas
        n_cells = max(2, math.ceil(per_area / net.subscribers_per_cell))
        k = 0
        for a in range(n_areas):
            start[o, a] = len(ids)
            count[o, a] = n_cells
            for _ in range(n_cells):
                lac = 1 + k // net.cells_per_lac
                ids.append(f"{mccmnc}-{lac:05d}-{10001 + k:05d}")
                lacs.append(f"{mccmnc}-{lac:05d}")
                cell_op.append(o)
                cell_area.append(a)
                k += 1
    v_start = np.zeros(len(visited), dtype=np.int64)
    v_count = np.full(len(visited), 4, dtype=np.int64)
    for i, cc in enumerate(visited):
        mcc = _VISITED_MCC.get(int(cc), 901)
        v_start[i] = len(ids)
        for k in range(4):
            ids.append(f"{mcc}01-{101 + k:05d}-{20001 + k:05d}")
            lacs.append(f"{mcc}01-{101 + k:05d}")
            cell_op.append(-1)
            cell_area.append(-1)
    return Cells(
        cell_id=ids,
        lac=lacs,
        operator=np.array(cell_op, dtype=np.int8),
        area=np.array(cell_area, dtype=np.int32),
        start=start,
        count=count,
        visited_start=v_start,
        visited_count=v_count,
    )


def _allocate_mobile_numbers(
    rng: np.random.Generator,
    ranges: NumberRanges,
    config: SimulatorConfig,
    operator: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense blocks of numbers per operator; returns (numbers, blocks[first, span, op])."""
    net = config.network
    numbers = np.zeros(len(operator), dtype=np.int64)
    blocks: list[tuple[int, int, int]] = []
    suffix = ranges.mobile_suffix_digits
    space = 10**suffix
    for o, op in enumerate(ranges.operators):
        members = np.flatnonzero(operator == o)
        if members.size == 0:
            continue
        prefixes = rng.permutation(np.array(ranges.mobile_prefixes(op), dtype=np.int64))
        n_blocks = math.ceil(members.size / net.number_block_size)
        per_prefix = math.ceil(n_blocks / len(prefixes))
        slot = space // per_prefix
        sizes = np.full(n_blocks, members.size // n_blocks)
        sizes[: members.size % n_blocks] += 1
        values: list[np.ndarray] = []
        for b, size in enumerate(sizes):
            gaps = rng.geometric(1.0 / net.number_gap_mean, size=size)
            span = int(gaps.sum()) + 1
            if span >= slot:
                raise SimulationError("network.number_block_size is too large for the number space")
            offset = (b // len(prefixes)) * slot + int(rng.integers(0, slot - span))
            first = int(prefixes[b % len(prefixes)]) * space + offset
            values.append(first + np.cumsum(gaps))
            blocks.append((first, span, o))
        numbers[rng.permutation(members)] = np.concatenate(values)
    return numbers, np.array(blocks, dtype=np.int64)


def _allocate_imsis(rng: np.random.Generator, plan: NumberingPlan, operator: np.ndarray) -> np.ndarray:
    imsi = np.full(len(operator), -1, dtype=np.int64)
    for o, op in enumerate(plan.operators):
        members = np.flatnonzero(operator == o)
        msin = rng.choice(10**10, size=members.size, replace=False)
        imsi[members] = int(plan.imsi_prefix(op)) * 10**10 + msin
    return imsi


def _label_noise(rng: np.random.Generator, population: np.ndarray, rate: float) -> tuple[np.ndarray, dict[str, int]]:
    """Ground truth as investigators would report it: some fraud missed, some look-alikes
    wrongly flagged (as many as missed, so the class balance stays as simulated)."""
    label_index = {name: i for i, name in enumerate(LABELS)}
    true = np.array([label_index[POPULATION_LABEL[p]] for p in POPULATIONS], dtype=np.int8)[population]
    label = true.copy()
    stats = {"fraud_labelled_normal": 0, "normal_labelled_fraud": 0}
    if rate <= 0:
        return label, stats
    for fraud, lookalikes in NOISE_LOOKALIKES.items():
        fraud_ids = np.flatnonzero(true == label_index[fraud])
        k = int(rng.binomial(len(fraud_ids), rate))
        pool = np.flatnonzero(np.isin(population, [POP[p] for p in lookalikes]) & (label == true))
        k = min(k, len(pool))
        if k == 0:
            continue
        label[rng.choice(fraud_ids, size=k, replace=False)] = label_index["normal"]
        label[rng.choice(pool, size=k, replace=False)] = label_index[fraud]
        stats["fraud_labelled_normal"] += k
        stats["normal_labelled_fraud"] += k
    return label, stats


# --------------------------------------------------------------------------------------------


def build_world(config: SimulatorConfig, *, subscribers: int, days: int, seed: int, plan: NumberingPlan) -> World:
    """Everything static about the simulated network (deterministic in ``seed``)."""
    if subscribers < 200:
        raise SimulationError("--subscribers must be at least 200")
    if days < 1:
        raise SimulationError("--days must be at least 1")
    # the network's own stream; each day's traffic draws from streams keyed by (seed, day, name)
    ss = np.random.SeedSequence([seed, 0])
    rng = np.random.default_rng(ss)
    net = config.network
    ranges = NumberRanges(plan)
    shares = _shares(config, plan)
    n_ops = len(plan.operators)
    period_start_us = int(np.datetime64(net.start_date.isoformat(), "us").astype(np.int64))
    offset_h = net.utc_offset_hours

    # --- how many of each -----------------------------------------------------------------
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
    n_wangiri = int(clis_per_campaign.sum())

    counts = {
        "ordinary": n_ordinary,
        "roamer": n_roamer,
        **business_counts,
        "spam_robocall": n_robo,
        "simbox": int(box_sizes["simbox"].sum()),
        "simbox_evasive": int(box_sizes["simbox_evasive"].sum()),
        **n_trunk,
        "wangiri": n_wangiri,
    }
    slices: dict[str, slice] = {}
    at = 0
    for p in POPULATIONS:
        slices[p] = slice(at, at + counts[p])
        at += counts[p]
    n = at
    n_sims = slices["simbox_evasive"].stop
    population = np.repeat(np.arange(len(POPULATIONS), dtype=np.int8), [counts[p] for p in POPULATIONS])

    # --- places -----------------------------------------------------------------------------
    n_areas = max(2, math.ceil(subscribers / net.subscribers_per_area))
    visited = np.array([prefix_int(p) for p in plan.common_international_prefixes], dtype=np.int64)
    if visited.size == 0:
        raise SimulationError("the numbering plan lists no common_international_prefixes for roaming")
    cells = _build_cells(config, plan, shares, subscribers=subscribers, n_areas=n_areas, visited=visited)

    operator = np.full(n, -1, dtype=np.int8)
    operator[:n_sims] = rng.choice(n_ops, size=n_sims, p=shares)
    area = np.full(n, -1, dtype=np.int32)
    area[:n_sims] = rng.integers(0, n_areas, size=n_sims)
    group = np.full(n, -1, dtype=np.int32)
    home_cell = np.full(n, -1, dtype=np.int32)
    work_cell = np.full(n, -1, dtype=np.int32)
    registered = np.zeros(n, dtype=bool)
    activity = np.zeros(n, dtype=np.int64)

    # --- people ----------------------------------------------------------------------------
    n_people = slices["roamer"].stop
    ocfg = config.ordinary
    people = np.arange(n_people)
    home_cell[people] = cells.pick(rng, operator[people], area[people])
    works = rng.random(n_people) < ocfg.work_cell_share
    work_area = rng.integers(0, n_areas, size=n_people)
    work_cell[people[works]] = cells.pick(rng, operator[people[works]], work_area[works])
    voice_rate = np.minimum(ocfg.voice_per_day.sample(rng, n_people), ocfg.max_per_day)
    sms_rate = np.minimum(ocfg.sms_per_day.sample(rng, n_people), ocfg.max_per_day)
    ten_years = 3650 * DAY_US
    activity[people] = period_start_us - DAY_US - (rng.random(n_people) * ten_years).astype(np.int64)
    fresh = rng.random(n_people) < ocfg.fresh_sim_share
    activity[people[fresh]] = period_start_us + (rng.random(int(fresh.sum())) * (days * DAY_US - HOUR_US)).astype(
        np.int64
    )
    graph = build_contact_graph(
        rng,
        area=area[people],
        contacts=ocfg.contacts,
        max_contacts=ocfg.max_contacts,
        local_share=ocfg.local_contact_share,
    )

    rcfg = config.roaming
    roamers = slices["roamer"]
    n_r = roamers.stop - roamers.start
    trip_start = np.where(rng.random(n_r) < rcfg.already_abroad_share, 0, rng.integers(0, days, size=n_r))
    trip_len = np.maximum(1, np.ceil(rcfg.trip_days.sample(rng, n_r))).astype(np.int64)
    d = np.arange(days)[:, None]
    roamer_abroad = (d >= trip_start[None, :]) & (d < (trip_start + trip_len)[None, :])
    roamer_country = rng.integers(0, len(visited), size=n_r)

    # --- devices: every IMEI allocated at once, so none collides ---------------------------
    phone_tacs = 35_000_000 + rng.choice(999_999, size=_PHONE_TACS, replace=False)
    phone_weights = 1.0 / np.arange(1, _PHONE_TACS + 1) ** 0.9
    phone_weights /= phone_weights.sum()
    module_tacs = 86_000_000 + rng.choice(999_999, size=_MODULE_TACS, replace=False)

    def phones(k: int) -> np.ndarray:
        return rng.choice(phone_tacs, size=k, p=phone_weights)

    requests: list[np.ndarray] = []

    def request(tacs: np.ndarray) -> slice:
        start = sum(len(r) for r in requests)
        requests.append(np.asarray(tacs, dtype=np.int64))
        return slice(start, start + len(tacs))

    req_people = request(phones(n_people))
    second = rng.random(n_people) < ocfg.second_device_share
    req_second = request(phones(int(second.sum())))

    # --- businesses ----------------------------------------------------------------------------
    business_plans: dict[str, dict[str, np.ndarray | slice]] = {}
    group_base = 0
    for p in BUSINESS_POPULATIONS:
        cfg_b = config.business(p)
        ids = np.arange(slices[p].start, slices[p].stop)
        sizes = _group_sizes(rng, len(ids), cfg_b)
        g_local = np.repeat(np.arange(len(sizes)), sizes)
        g_op = rng.choice(n_ops, size=len(sizes), p=shares)
        g_area = rng.integers(0, n_areas, size=len(sizes))
        operator[ids] = g_op[g_local]
        area[ids] = g_area[g_local]
        g_cell = cells.pick(rng, g_op, g_area)
        home_cell[ids] = g_cell[g_local]
        group[ids] = group_base + g_local
        group_base += len(sizes)
        registered[ids] = cfg_b.registered
        activity[ids] = period_start_us - DAY_US * (30 + rng.integers(0, 8 * 365, size=len(ids)))
        gateway = _exact_share(rng, len(sizes), cfg_b.gsm_gateway_share)
        pool_len = np.where(gateway, cfg_b.gateway_imeis.sample(rng, len(sizes)), 0)
        business_plans[p] = {
            "ids": ids,
            "g_local": g_local,
            "g_cell": g_cell,
            "auto": _exact_share(rng, len(sizes), cfg_b.auto_dialler_share),
            "pool_len": pool_len,
            "req_own": request(phones(len(ids))),
            "req_pool": request(rng.choice(module_tacs, size=int(pool_len.sum()))),
        }

    # --- SIM boxes -------------------------------------------------------------------------------
    box_plans: dict[str, dict[str, np.ndarray | slice]] = {}
    for p in SIMBOX_POPULATIONS:
        cfg_s: SimboxConfig = getattr(config, p)
        ids = np.arange(slices[p].start, slices[p].stop)
        sizes = box_sizes[p]
        b_local = np.repeat(np.arange(len(sizes)), sizes)
        b_op = rng.choice(n_ops, size=len(sizes), p=shares)
        b_area = rng.integers(0, n_areas, size=len(sizes))
        operator[ids] = b_op[b_local]
        area[ids] = b_area[b_local]
        b_cell_k = rng.integers(0, 10**6, size=len(sizes))
        group[ids] = group_base + b_local
        group_base += len(sizes)
        before = cfg_s.activation_days_before.sample(rng, len(ids))
        activity[ids] = period_start_us - before * DAY_US - rng.integers(0, DAY_US, size=len(ids))
        if cfg_s.imeis_per_box is not None:
            pool_len = cfg_s.imeis_per_box.sample(rng, len(sizes))
            req_pool = request(rng.choice(module_tacs, size=int(pool_len.sum())))
            req_own = request(np.zeros(0, dtype=np.int64))
        else:
            pool_len = np.zeros(len(sizes), dtype=np.int64)
            req_pool = request(np.zeros(0, dtype=np.int64))
            # evasive tooling imitates phones, but one box buys one model
            req_own = request(np.repeat(phones(len(sizes)), sizes))
        n_cells_sim = cfg_s.cells_per_sim.sample(rng, len(ids))
        width = int(cfg_s.cells_per_sim.high)
        # cell 0 is the rack's cell; the others are random cells of the same area
        k = np.c_[b_cell_k[b_local], rng.integers(0, 10**6, size=(len(ids), max(0, width - 1)))]
        sim_cells = cells.nth(
            np.repeat(operator[ids][:, None], width, axis=1),
            np.repeat(area[ids][:, None], width, axis=1),
            k[:, :width],
        )
        home_cell[ids] = sim_cells[:, 0]
        box_plans[p] = {
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

    # --- robocall operations ------------------------------------------------------------------
    robo_ids = np.arange(slices["spam_robocall"].start, slices["spam_robocall"].stop)
    robo_plans = []
    at = 0
    start_utc_s = ((robo.hours_local.low - offset_h) % 24) * 3600
    for bounds in chains:
        k = len(bounds) - 1
        sims = robo_ids[at : at + k]
        at += k
        op = int(rng.choice(n_ops, p=shares))
        op_area = int(rng.integers(0, n_areas))
        operator[sims] = op
        area[sims] = op_area
        n_dev = int(robo.devices_per_operation.sample(rng, 1)[0]) or 1
        n_cell = int(robo.cells_per_operation.sample(rng, 1)[0]) or 1
        op_cells = cells.pick(rng, np.full(n_cell, op), np.full(n_cell, op_area))
        home_cell[sims] = op_cells[0]
        group[sims] = group_base
        group_base += 1
        # the first call of each SIM, in UTC, minus the lead between activation and first use
        tau = bounds[:-1]
        first_call = (
            period_start_us
            + (tau // work_s).astype(np.int64) * DAY_US
            + int(start_utc_s * US)
            + ((tau % work_s) * US).astype(np.int64)
        )
        lead = (robo.activation_lead_h.sample(rng, k) * HOUR_US).astype(np.int64)
        activity[sims] = np.maximum(period_start_us, first_call - lead)
        tac = phones(n_dev) if rng.random() < 0.5 else rng.choice(module_tacs, size=n_dev)
        robo_plans.append(
            {
                "sims": sims,
                "bounds": bounds,
                "op": op,
                "cells": op_cells,
                "req_dev": request(tac),
            }
        )

    # --- numbers, IMSIs, IMEIs ------------------------------------------------------------------
    number = np.zeros(n, dtype=np.int64)
    number[:n_sims], number_blocks = _allocate_mobile_numbers(rng, ranges, config, operator[:n_sims])
    imsi = np.full(n, -1, dtype=np.int64)
    imsi[:n_sims] = _allocate_imsis(rng, plan, operator[:n_sims])
    imeis = allocate_imeis(rng, np.concatenate(requests)) if requests else np.zeros(0, np.int64)
    imei = np.full(n, -1, dtype=np.int64)
    imei[people] = imeis[req_people]
    second_imei = np.full(n_people, -1, dtype=np.int64)
    second_imei[second] = imeis[req_second]

    dno = np.array(sorted(prefix_int(x) for x in plan.do_not_originate), dtype=np.int64)
    fixed_ops = [o for o, op in enumerate(plan.operators) if plan.fixed_prefixes(op)]
    fixed_prefixes = [(o, pfx) for o in fixed_ops for pfx in ranges.fixed_prefixes(plan.operators[o])]
    if not fixed_prefixes:
        raise SimulationError("the numbering plan has no fixed-line prefixes for fixed callers")
    fixed_total = len(plan.country_code) + plan.fixed_nsn_length
    for p in ("enterprise_trunk", "fixed_line"):
        ids = np.arange(slices[p].start, slices[p].stop)
        pick = rng.integers(0, len(fixed_prefixes), size=len(ids))
        pfx = np.array([fixed_prefixes[i][1] for i in pick], dtype=np.int64)
        digits = fixed_total - np.array([len(str(x)) for x in pfx], dtype=np.int64)
        operator[ids] = np.array([fixed_prefixes[i][0] for i in pick], dtype=np.int8)
        number[ids] = unique_random_numbers(rng, pfx, suffix_digits=digits, exclude=np.r_[dno, number[:n_sims]])
        area[ids] = rng.integers(0, n_areas, size=len(ids))
        registered[ids] = getattr(config, p).registered
        if p == "enterprise_trunk":
            # each PBX is its own business (the allowlist keys on it)
            group[ids] = group_base + np.arange(len(ids))
            group_base += len(ids)
        activity[ids] = period_start_us - DAY_US * (30 + rng.integers(0, 8 * 365, size=len(ids)))
    premium = np.array([prefix_int(x) for x in plan.international_premium_prefixes], dtype=np.int64)
    if premium.size == 0:
        raise SimulationError("the numbering plan lists no international_premium_prefixes for Wangiri")
    ids = np.arange(slices["foreign_caller"].start, slices["foreign_caller"].stop)
    # some legitimate callers come from countries on the premium-rate list: a premium CLI alone
    # does not make a call Wangiri
    share = config.foreign_caller.premium_country_share
    n_premium = max(1, round(share * len(ids))) if share > 0 else 0
    use_premium = np.zeros(len(ids), dtype=bool)
    use_premium[rng.choice(len(ids), size=min(n_premium, len(ids)), replace=False)] = True
    cc = np.where(use_premium, rng.choice(premium, size=len(ids)), rng.choice(visited, size=len(ids)))
    number[ids] = unique_random_numbers(rng, cc, suffix_digits=9)
    activity[ids] = period_start_us - DAY_US * rng.integers(1, 3650, size=len(ids))

    # --- Wangiri campaigns ------------------------------------------------------------------------
    w_ids = np.arange(slices["wangiri"].start, slices["wangiri"].stop)
    w_cc = rng.choice(premium, size=len(w_ids))
    number[w_ids] = unique_random_numbers(rng, w_cc, suffix_digits=8, exclude=number[ids])
    campaigns: list[WangiriCampaign] = []
    group_base += 1
    block_first, block_span = number_blocks[:, 0], number_blocks[:, 1]
    at = 0
    for c, n_clis in enumerate(clis_per_campaign):
        day = c // campaigns_per_day
        clis = w_ids[at : at + n_clis]
        at += n_clis
        start_us = period_start_us + day * DAY_US + int(rng.integers(0, DAY_US - HOUR_US))
        activity[clis] = start_us
        group[clis] = group_base + c
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
                carrier=int(rng.integers(0, net.international_carriers)),
            )
        )

    # --- per-plan arrays that need IMEIs ---------------------------------------------------------
    businesses: dict[str, BusinessGroups] = {}
    lead_list = people[np.argsort(number[people], kind="stable")]
    for p, bp in business_plans.items():
        cfg_b = config.business(p)
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
        businesses[p] = BusinessGroups(
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
    boxes: dict[str, SimBoxes] = {}
    for p, bx in box_plans.items():
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
        boxes[p] = SimBoxes(
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
    robocall_ops: list[RobocallOperation] = []
    for rp in robo_plans:
        sims = np.asarray(rp["sims"])
        devices = imeis[rp["req_dev"]]
        imei[sims] = devices[np.arange(len(sims)) % len(devices)]
        sequential = bool(rng.random() < robo.sequential_share)
        if sequential:
            block = number_blocks[int(rng.integers(0, len(number_blocks)))]
            dial_start, dial_span = int(block[0]), int(block[1])
            dial_start += int(rng.integers(0, max(1, dial_span // 2)))
            dial_span = int(block[0]) + int(block[1]) - dial_start
        else:
            dial_start, dial_span = int(rng.integers(0, n_people)), n_people
        robocall_ops.append(
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

    trunk_rate = np.zeros(n, dtype=np.float64)
    for p in TRUNK_POPULATIONS:
        s = slices[p]
        trunk_rate[s] = getattr(config, p).calls_per_day.sample(rng, s.stop - s.start)

    label, noise = _label_noise(rng, population, config.labels.noise_rate)

    # numbers people dial that are not people: hotlines (the DNO list only receives calls),
    # toll-free and 1900 services, and now and then an emergency number
    service = [prefix_int(x) for x in sorted(plan.do_not_originate)]
    for pfx in plan.toll_free_prefixes + plan.premium_prefixes:
        service += [prefix_int(pfx) * 10_000 + int(v) for v in rng.integers(1000, 9999, size=6)]
    service += [int(f"{plan.country_code}{code}") for code in list(plan.emergency_numbers)[:2]]
    trunk_names = [f"igw-{c + 1:02d}" for c in range(net.international_carriers)]
    trunk_names += [f"dic-{op}" for op in plan.operators]

    return World(
        config=config,
        plan=plan,
        ranges=ranges,
        subscribers=subscribers,
        days=days,
        seed=seed,
        period_start_us=period_start_us,
        operators=plan.operators,
        number=number,
        imsi=imsi,
        imei=imei,
        operator=operator,
        population=population,
        group=group,
        area=area,
        home_cell=home_cell,
        work_cell=work_cell,
        activity_start_us=activity,
        registered=registered,
        label=label,
        slices=slices,
        graph=graph,
        voice_rate=voice_rate,
        sms_rate=sms_rate,
        second_imei=second_imei,
        people_by_op=[np.flatnonzero(operator[:n_people] == o) for o in range(n_ops)],
        lead_list=lead_list,
        roamer_abroad=roamer_abroad,
        roamer_country=roamer_country,
        visited_prefixes=visited,
        cells=cells,
        businesses=businesses,
        boxes=boxes,
        robocall_ops=robocall_ops,
        wangiri_campaigns=campaigns,
        trunk_rate=trunk_rate,
        number_blocks=number_blocks,
        unallocated_prefixes=np.array(ranges.unallocated_prefixes(), dtype=np.int64),
        service_numbers=np.array(service, dtype=np.int64),
        dno_numbers=dno,
        trunk_names=trunk_names,
        igw_trunk0=0,
        dic_trunk0=net.international_carriers,
        label_noise=noise,
    )
