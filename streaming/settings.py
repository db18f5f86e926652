"""Settings of the streaming job (``simguard stream``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features.validation import ValidationRules


class StreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Kafka ``startingOffsets`` for a new checkpoint (a restart resumes from the checkpoint)
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    #: cap per micro-batch, so a backlog is worked off in bounded steps
    max_offsets_per_trigger: int | None = Field(200_000, ge=1)
    trigger_interval_s: float = Field(10.0, gt=0)
    #: where the stream keeps its checkpoint and state tables, as a URI any Hadoop file system
    #: serves (``file:///…``, ``hdfs://…``, ``s3a://…``); ``None``: ``<home>/stream``
    state_uri: str | None = None
    #: Prometheus metrics port of the running job (0: off)
    metrics_port: int = Field(9464, ge=0, le=65535)
    #: event time the state table keeps behind the newest record; at least the features'
    #: longest look-back (checked when the job starts)
    state_keep_s: int = Field(3 * 86400, gt=0)
    #: every this many micro-batches the state table drops rows older than ``state_keep_s``,
    #: compacts its small files and vacuums what it no longer references (0: never)
    state_maintain_every: int = Field(200, ge=0)
    #: keep the validated records (valid and dead-lettered, with their Kafka coordinates) in a
    #: Delta table beside the state: the stream's archive of what it read
    archive: bool = True
    #: the blocklist distribution (Kafka topics, webhooks, expiry) runs beside the detection, every
    #: this many seconds and right after each micro-batch that decided something
    publish_interval_s: float = Field(5.0, gt=0)
    validation: ValidationRules = ValidationRules()
