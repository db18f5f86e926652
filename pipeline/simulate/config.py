"""Simulator configuration: ``configs/simulator.yaml`` validated into frozen pydantic models.

Every population of the synthetic network has its own section; the numbers in the YAML are the
single source of the simulator's behaviour (the models below carry no tunable defaults), and a
user file given with ``--config-sim`` is merged over the repository's file, so it only needs the
keys it changes. Errors name the file and the field, like :mod:`pipeline.config`.

Why each value is what it is (traffic volumes, answer rates, durations, the fraud signatures) is
written next to it in the YAML, with references to ``DOMAIN.md``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.errors import ConfigError
from features.resources import config_file
from features.schema import RELEASE_CAUSES

DEFAULT_SIMULATOR_CONFIG = config_file("simulator.yaml")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lognormal(_Model):
    """``median * exp(sigma * Z)``: positive values with the heavy right tail of call data."""

    median: float = Field(gt=0)
    sigma: float = Field(ge=0, le=5)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.median * np.exp(self.sigma * rng.standard_normal(size))

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


class IntRange(_Model):
    """Inclusive integer range; the YAML may write it as ``[low, high]``."""

    low: int = Field(ge=0)
    high: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError("a range is written [low, high]")
            return {"low": value[0], "high": value[1]}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        return self

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=size)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2


class HoursWindow(IntRange):
    """Local working hours ``[low, high)``; ``[0, 24]`` is round the clock."""

    @model_validator(mode="after")
    def _in_day(self) -> HoursWindow:
        if self.high > 24 or self.high == self.low:
            raise ValueError("hours are [start, end) with 0 <= start < end <= 24")
        return self

    @property
    def hours(self) -> int:
        return self.high - self.low


class ReleaseMix(_Model):
    """Relative frequencies of the release causes (normalised; names as in features.schema)."""

    answered: float = Field(0.0, ge=0)
    no_answer: float = Field(0.0, ge=0)
    busy: float = Field(0.0, ge=0)
    rejected: float = Field(0.0, ge=0)
    failed: float = Field(0.0, ge=0)
    cancelled: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> ReleaseMix:
        if sum(self.weights()) <= 0:
            raise ValueError("at least one release cause needs a positive weight")
        return self

    def weights(self) -> list[float]:
        return [float(getattr(self, cause)) for cause in RELEASE_CAUSES]

    def probabilities(self) -> np.ndarray:
        w = np.asarray(self.weights(), dtype=np.float64)
        return w / w.sum()


def _profile(value: list[float]) -> list[float]:
    if len(value) != 24 or min(value) < 0 or sum(value) <= 0:
        raise ValueError("an hourly profile is 24 non-negative weights, local hours 0..23")
    return value


class NetworkConfig(_Model):
    #: first simulated day (UTC midnight); fixed so that runs never depend on "now"
    start_date: dt.date
    #: Vietnam is UTC+7 all year: daily rhythms are local, timestamps UTC
    utc_offset_hours: int = Field(ge=-12, le=14)
    #: subscriber share per operator (keys from the numbering plan)
    operator_share: dict[str, float]
    subscribers_per_area: int = Field(ge=100)
    subscribers_per_cell: int = Field(ge=10)
    cells_per_lac: int = Field(ge=1)
    #: subscribers per dense number block, and the mean step between assigned numbers in it
    number_block_size: int = Field(ge=100)
    number_gap_mean: float = Field(ge=1.0, le=10.0)
    #: international carriers that hand calls to the gateway (trunk groups igw-01, ...)
    international_carriers: int = Field(ge=2, le=99)
    #: carriers (1-based) that carry most spoofed traffic (grey routes); at least one must stay
    #: clean for roamers' and foreign callers' traffic
    grey_carriers: tuple[int, ...]
    weekend_factor: float = Field(ge=0, le=2)
    #: local-hour weights of people's calls
    hourly_profile_local: list[float]
    ring_s: Lognormal
    numbering_plan: Path | None = None

    _hours = field_validator("hourly_profile_local")(_profile)

    @field_validator("operator_share")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or min(value.values()) < 0 or sum(value.values()) <= 0:
            raise ValueError("operator shares must be non-negative with a positive sum")
        return value

    @model_validator(mode="after")
    def _grey(self) -> NetworkConfig:
        bad = [c for c in self.grey_carriers if not 1 <= c <= self.international_carriers]
        if bad:
            raise ValueError(f"grey_carriers {bad} outside 1..{self.international_carriers}")
        if len(set(self.grey_carriers)) >= self.international_carriers:
            raise ValueError("grey_carriers must leave at least one clean carrier")
        return self


class OrdinaryConfig(_Model):
    voice_per_day: Lognormal
    sms_per_day: Lognormal
    max_per_day: int = Field(ge=1)
    contacts: Lognormal
    max_contacts: int = Field(ge=1)
    #: share of a person's contacts living in the same area (community structure)
    local_contact_share: float = Field(ge=0, le=1)
    #: share of calls to numbers outside the contact list, and where they go
    stranger_share: float = Field(ge=0, le=1)
    stranger_mix: dict[Literal["subscriber", "fixed", "international", "service"], float]
    release: ReleaseMix
    duration_s: Lognormal
    #: unanswered calls between people that the callee returns (reciprocity)
    callback_probability: float = Field(ge=0, le=1)
    callback_delay_min: Lognormal
    work_cell_share: float = Field(ge=0, le=1)
    mobility_noise: float = Field(ge=0, le=1)
    second_device_share: float = Field(ge=0, le=1)
    #: SIMs activated during the simulated period (fresh SIMs are not all fraud)
    fresh_sim_share: float = Field(ge=0, le=1)


class RoamingConfig(_Model):
    prevalence: float = Field(ge=0, le=0.5)
    min_count: int = Field(ge=0)
    trip_days: Lognormal
    already_abroad_share: float = Field(ge=0, le=1)
    #: calling activity abroad relative to at home
    activity_factor: float = Field(ge=0, le=2)
    #: calls abroad that go to Vietnamese numbers (they enter through the gateway)
    home_call_share: float = Field(ge=0, le=1)
    #: gateway records whose HLR roaming flag is stale (wrong)
    stale_hlr_rate: float = Field(ge=0, le=0.5)


class BusinessConfig(_Model):
    """Legitimate high-volume callers: the look-alikes that break single-feature rules."""

    prevalence: float = Field(ge=0, le=0.2)
    min_count: int = Field(ge=0)
    #: SIMs per business; office businesses keep them in one cell
    group_size: IntRange
    registered: bool
    hours_local: HoursWindow
    weekend_factor: float = Field(ge=0, le=2)
    outgoing_per_hour: Lognormal
    #: ``customers``: random people; ``lead_list``: consecutive numbers of a sorted lead list,
    #: one call per number per day (Decree 91/2020); ``fleet``: partly a fixed set of drivers
    callees: Literal["customers", "lead_list", "fleet"]
    fleet_size: int = Field(0, ge=0)
    fleet_share: float = Field(0.0, ge=0, le=1)
    release: ReleaseMix
    #: per-SIM spread of the answer probability and the durations (heterogeneous businesses)
    answer_spread: float = Field(ge=0, le=2)
    duration_s: Lognormal
    duration_spread: float = Field(ge=0, le=2)
    incoming_per_day: Lognormal
    incoming_release: ReleaseMix
    incoming_duration_s: Lognormal
    sms_per_day: float = Field(ge=0)
    #: distinct cells per SIM per day (1: an office; more: on the move)
    cells_per_day: IntRange
    #: businesses whose SIMs sit in one GSM gateway (several IMSIs behind each IMEI)
    gsm_gateway_share: float = Field(ge=0, le=1)
    gateway_imeis: IntRange
    #: businesses that pace calls with an auto-dialler (regular intervals, like robocallers)
    auto_dialler_share: float = Field(ge=0, le=1)
    callback_probability: float = Field(ge=0, le=1)


class TrunkCallerConfig(_Model):
    """Callers that are not subscribers here: enterprise PBXs, fixed lines, people abroad."""

    prevalence: float = Field(ge=0, le=0.5)
    min_count: int = Field(ge=0)
    calls_per_day: Lognormal
    #: ``None``: people's daily rhythm
    hours_local: HoursWindow | None = None
    registered: bool = False
    #: share of foreign callers whose country code is on the premium-rate list
    premium_country_share: float = Field(0.0, ge=0, le=1)
    release: ReleaseMix
    duration_s: Lognormal


class IntervalJitter(_Model):
    """Range of a per-operation lognormal sigma, ``[low, high]``."""

    low: float = Field(ge=0, le=2)
    high: float = Field(ge=0, le=2)

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return {"low": value[0], "high": value[1]}
        return value


class RobocallConfig(_Model):
    #: robocall SIMs in use on a day, as a share of subscribers
    prevalence: float = Field(ge=0, le=0.2)
    min_operations: int = Field(ge=0)
    sim_lifetime_h: Lognormal
    hours_local: HoursWindow
    call_interval_s: Lognormal
    #: per-operation jitter of the dialler interval (sigma of a lognormal), low = machine-like
    interval_jitter: IntervalJitter
    burst_calls: IntRange
    burst_pause_min: Lognormal
    #: operations dialling sequential numbers (the rest dial a sorted list of real subscribers)
    sequential_share: float = Field(ge=0, le=1)
    release: ReleaseMix
    answer_spread: float = Field(ge=0, le=2)
    duration_s: Lognormal
    duration_spread: float = Field(ge=0, le=2)
    devices_per_operation: IntRange
    cells_per_operation: IntRange
    activation_lead_h: Lognormal
    callback_probability: float = Field(ge=0, le=1)


class SimboxConfig(_Model):
    prevalence: float = Field(ge=0, le=0.2)
    min_boxes: int = Field(ge=0)
    cohort_size: IntRange
    #: GSM modules / forged IMEIs the SIMs rotate through; ``None``: one own IMEI per SIM
    imeis_per_box: IntRange | None
    calls_per_sim_per_hour: Lognormal
    #: ``None``: flat, round the clock; else local-hour weights (evasive boxes imitate people)
    hourly_profile_local: list[float] | None
    on_net_share: float = Field(ge=0, le=1)
    release: ReleaseMix
    duration_s: Lognormal
    #: calls and SMS between SIMs of the same box, staged to look like a social life
    peer_calls_per_sim_per_day: float = Field(ge=0)
    peer_sms_per_sim_per_day: float = Field(ge=0)
    #: cells each SIM's calls spread over (simulated movement)
    cells_per_sim: IntRange
    activation_days_before: IntRange
    callback_probability: float = Field(ge=0, le=1)

    @field_validator("hourly_profile_local")
    @classmethod
    def _hours(cls, value: list[float] | None) -> list[float] | None:
        return None if value is None else _profile(value)


class WangiriConfig(_Model):
    #: campaigns per day per subscriber
    prevalence: float = Field(ge=0, le=0.01)
    min_campaigns_per_day: int = Field(ge=0)
    clis_per_campaign: IntRange
    calls_per_campaign: IntRange
    call_interval_s: Lognormal
    #: victims who pick up within the single ring
    answered_share: float = Field(ge=0, le=1)
    callback_probability: float = Field(ge=0, le=1)
    callback_duration_s: Lognormal


SPOOF_KINDS: tuple[str, ...] = ("domestic_cli_not_roaming", "do_not_originate", "unallocated")


class SpoofingConfig(_Model):
    #: campaigns per day per subscriber
    prevalence: float = Field(ge=0, le=0.01)
    min_campaigns_per_day: int = Field(ge=0)
    calls_per_campaign: Lognormal
    max_calls_per_campaign: int = Field(ge=1)
    campaign_duration_min: Lognormal
    hours_local: HoursWindow
    kind_mix: dict[Literal["domestic_cli_not_roaming", "do_not_originate", "unallocated"], float]
    #: share of a campaign's calls routed over the grey carriers
    grey_route_share: float = Field(ge=0, le=1)
    release: ReleaseMix
    duration_s: Lognormal
    #: a victim's line shows roaming in a stale HLR answer
    stale_hlr_rate: float = Field(ge=0, le=0.5)
    callback_probability: float = Field(ge=0, le=1)


class LabelConfig(_Model):
    #: share of fraud entities investigators miss (labelled normal); as many look-alikes are
    #: wrongly labelled fraud
    noise_rate: float = Field(ge=0, le=0.2)


class DriftConfig(_Model):
    enabled: bool
    #: first day (0-based) with the changed fraud behaviour
    start_day: int = Field(ge=0)
    robocall_interval_factor: float = Field(gt=0)
    robocall_duration_factor: float = Field(gt=0)
    #: incoming calls per SIM-box SIM per day staged from sibling SIMs once drift starts
    simbox_peer_calls_per_sim_per_day: float = Field(ge=0)


class OutputConfig(_Model):
    rows_per_file: int = Field(ge=1000)
    row_group_size: int = Field(ge=1000)
    compression: Literal["zstd", "snappy", "gzip", "none"]


class SimulatorConfig(_Model):
    network: NetworkConfig
    ordinary: OrdinaryConfig
    roaming: RoamingConfig
    call_centre: BusinessConfig
    telemarketer: BusinessConfig
    delivery_driver: BusinessConfig
    taxi_dispatch: BusinessConfig
    business_hotline: BusinessConfig
    enterprise_trunk: TrunkCallerConfig
    fixed_line: TrunkCallerConfig
    foreign_caller: TrunkCallerConfig
    spam_robocall: RobocallConfig
    simbox: SimboxConfig
    simbox_evasive: SimboxConfig
    wangiri: WangiriConfig
    spoofing: SpoofingConfig
    labels: LabelConfig
    drift: DriftConfig
    output: OutputConfig

    def business(self, population: str) -> BusinessConfig:
        value = getattr(self, population)
        assert isinstance(value, BusinessConfig)
        return value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, recursing into mappings (lists and scalars are replaced)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read simulator config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{path}:{line} {getattr(exc, 'problem', None) or 'invalid YAML'}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the simulator config must be a mapping of sections")
    return raw


def load_simulator_config(
    path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> SimulatorConfig:
    """The repository's ``configs/simulator.yaml``, with ``path`` and then ``overrides`` merged
    over it; ``ConfigError`` (one line naming file and field) when invalid.

    >>> cfg = load_simulator_config(overrides={"drift": {"enabled": True}})
    >>> cfg.drift.enabled, cfg.network.utc_offset_hours
    (True, 7)
    """
    raw = _read_yaml(DEFAULT_SIMULATOR_CONFIG)
    source = str(DEFAULT_SIMULATOR_CONFIG)
    if path is not None:
        raw = deep_merge(raw, _read_yaml(Path(path)))
        source = str(path)
    if overrides:
        raw = deep_merge(raw, overrides)
    try:
        return SimulatorConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against configs/simulator.yaml)"
        elif "input" in first and not isinstance(first["input"], (dict, list)):
            msg = f"{msg} (got {first['input']!r})"
        raise ConfigError(f"{source}: {field}: {msg}") from None
