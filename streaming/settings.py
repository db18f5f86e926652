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
    #: the feature update logs (``streaming.features_stream``): every this many micro-batches a
    #: query folds its log into one compacted generation and deletes the folders an older one
    #: holds (0: never; a live job at a 10 s trigger writes 8,640 folders a day per log)
    log_compact_every: int = Field(100, ge=0)
    #: event time a compacted generation keeps behind its newest bucket; at least the features'
    #: longest look-back (checked when the job starts). A trunk call so late that its look-back
    #: reaches before what the CLI and trunk logs still keep is not scored (its context is gone)
    #: and is counted in the batch record as ``too_late``
    log_keep_s: int = Field(3 * 86400, gt=0)
    validation: ValidationRules = ValidationRules()
