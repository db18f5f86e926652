"""Feature parameters. Feature names are generated from them (``calls_out_24h``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


def duration_label(seconds: int) -> str:
    """3600 -> ``1h``, 86400 -> ``24h``, 90 -> ``90s``, 600 -> ``10m``."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


class FeatureSettings(BaseModel):
    """Windows and thresholds shared by the batch and the streaming feature paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: per-SIM trailing windows ending at the scoring time: the long one (24 h) and the short
    #: one (1 h). The long window is the whole hours before the current one plus the current hour
    #: up to the scoring time; the short one is the minutes before the scoring time.
    window_s: int = Field(86400, gt=0)
    short_window_s: int = Field(3600, gt=0)
    #: a SIM's CDRs are aggregated once into sub-buckets of this length (the state the stream
    #: keeps, and the grain of the short window)
    sub_bucket_s: int = Field(60, gt=0)
    #: a SIM is scored at the end of every interval of this length in which it called (the stream
    #: scores it at the end of each micro-batch instead, capped at the interval's end)
    score_interval_s: int = Field(60, gt=0)
    #: training and validation keep, per SIM and day, its first ``train_points_per_day // 4``
    #: scoring points and this many more at random (fixed by the SIM and the time); ``None``:
    #: all. The validation and test splits always keep all.
    train_points_per_day: int | None = Field(48, ge=1)
    #: features read from a window's call list (distinct callees, durations, gaps, sequential
    #: dialling, call-backs) use its newest this many calls; counts use every call. Bounds the
    #: work per scoring point for a SIM that calls all day.
    max_calls: int = Field(200, ge=2)
    #: "SIMs active in the same cell at once": distinct SIMs per cell per bucket of this length
    cohort_bucket_s: int = Field(3600, gt=0)
    #: an answered call shorter than this is short (DOMAIN.md: robocalls and SIM-box test calls)
    short_call_s: float = Field(10.0, gt=0)
    #: consecutive callees whose numbers differ by 1..this are sequential dialling
    sequential_max_step: int = Field(10, ge=1)
    #: local clock for the night share (Vietnam, UTC+7)
    local_utc_offset_h: int = Field(7, ge=-12, le=14)
    night_start_hour: int = Field(22, ge=0, le=23)
    night_end_hour: int = Field(6, ge=0, le=23)
    #: per call: other calls presenting the same CLI within this many seconds (spoofing)
    concurrency_window_s: int = Field(60, gt=0)
    #: per call: what the CLI's owner did from their own SIM in this long before the call (a
    #: victim of spoofing is at home on a domestic cell; a roamer calling home is abroad)
    owner_lookback_s: int = Field(86400, gt=0)
    #: per call: what else arrived on the same ingress trunk group in this bucket (a spoofing
    #: campaign sends bursts of other people's numbers over one route)
    trunk_bucket_s: int = Field(3600, gt=0)

    @model_validator(mode="after")
    def _grains_divide(self) -> FeatureSettings:
        if self.window_s % 3600 != 0 or self.window_s <= 3600:
            raise ValueError("window_s must be a multiple of 3600 s (whole hours), above one hour")
        for name in ("short_window_s", "score_interval_s"):
            if getattr(self, name) % self.sub_bucket_s != 0:
                raise ValueError(f"{name} must be a multiple of sub_bucket_s")
        if 3600 % self.sub_bucket_s != 0:
            raise ValueError("sub_bucket_s must divide one hour")
        if self.short_window_s >= self.window_s:
            raise ValueError("short_window_s must be shorter than window_s")
        if self.window_s % self.cohort_bucket_s != 0:
            raise ValueError("window_s must be a multiple of cohort_bucket_s")
        return self

    @property
    def window(self) -> str:
        return duration_label(self.window_s)

    @property
    def short_window(self) -> str:
        return duration_label(self.short_window_s)

    @property
    def burst(self) -> str:
        """The busiest clock hour of the long window (``calls_out_peak_1h_24h``)."""
        return duration_label(3600)
