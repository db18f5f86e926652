"""The synthetic network before any call: who exists, with which numbers, devices and cells.

:func:`~pipeline.simulate.build.build_world` turns (config, subscribers, days, seed) into a
:class:`World` (one builder per population, in ``build``): one row per
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
from pipeline.simulate.config import BusinessConfig, SimulatorConfig
from pipeline.simulate.graph import ContactGraph
from pipeline.simulate.numbers import (
    NumberRanges,
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
