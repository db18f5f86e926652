"""Settings of the streaming job (``simguard stream``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features.validation import ValidationRules


class StreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Kafka ``startingOffsets`` for a new checkpoint (a restart resumes from the checkpoint)
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    #: cap per micro-batch, so a backlog is worked off in bounded steps
    max_offsets_per_trigger: int | None = Field(200_000, ge=1)
    #: cap per micro-batch of the queries that read the validated table (files; ``validate``
    #: writes one per Kafka partition and batch); ``None``: all new files
    max_files_per_trigger: int | None = Field(None, ge=1)
    trigger_interval_s: float = Field(10.0, gt=0)
    #: checkpoints and the feature update logs; ``None``: ``<home>/stream``
    state_dir: Path | None = None
    #: Prometheus metrics port of the running job (0: off)
    metrics_port: int = Field(9464, ge=0, le=65535)
    #: score only the newest window row of each SIM in a micro-batch. Off by default: an event
    #: updates every sliding window that holds it, and the older ones (the window starting at
    #: midnight holds the whole day) would otherwise never be scored again once a newer window
    #: opened, unlike ``simguard evaluate``, which flags a SIM when any of its windows scores
    #: above the threshold
    latest_window_only: bool = False
    validation: ValidationRules = ValidationRules()
