"""Operations metrics of the streaming job: logged per batch and exposed for Prometheus.

Records in, dead-lettered (by reason), decisions by action and fraud type, batch duration and
consumer lag (offsets behind the latest, from Spark's Kafka source progress, updated at every
micro-batch by a query listener). The job keeps no watermark: a late record is aggregated into
its own minute and scored as of its own time, so no record is left out of the features.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("simguard.stream")


@dataclass
class StreamMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _served: bool = False
    _listener: Any = None

    def __post_init__(self) -> None:
        r = self.registry
        self.records_in = Counter("simguard_records_in", "CDR records read from Kafka", registry=r)
        self.valid = Counter("simguard_records_valid", "records that passed validation", registry=r)
        self.dead = Counter(
            "simguard_records_dead_lettered", "records sent to the dead-letter topic", ["reason_code"], registry=r
        )
        self.decisions = Counter("simguard_decisions", "decisions taken", ["query", "decision"], registry=r)
        self.batch_duration = Gauge(
            "simguard_batch_duration_seconds", "last micro-batch duration", ["query"], registry=r
        )
        self.lag = Gauge(
            "simguard_consumer_lag_records", "offsets behind the latest (max over partitions)", ["query"], registry=r
        )
        self.rows_per_s = Gauge("simguard_input_rows_per_second", "processed rows per second", ["query"], registry=r)

    def serve(self, port: int) -> None:
        if port and not self._served:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)
            self._served = True

    def observe_validation(self, record: dict[str, Any]) -> None:
        self.records_in.inc(record["records_in"])
        self.valid.inc(record["valid"])
        for reason, n in record["dead_letter_reasons"].items():
            self.dead.labels(reason).inc(n)

    def observe_decisions(self, query: str, record: dict[str, Any]) -> None:
        for decision, n in record["decisions"].items():
            self.decisions.labels(query, decision).inc(n)
        self.batch_duration.labels(query).set(record["duration_s"])

    def listen(self, spark: SparkSession) -> None:
        """Update the progress gauges (lag, rows/s) at every micro-batch of every query, from
        Spark's query listener, while the job runs."""
        if self._listener is not None:
            return
        from pyspark.sql.streaming import StreamingQueryListener

        metrics = self

        class Progress(StreamingQueryListener):
            def onQueryStarted(self, event: Any) -> None:
                pass

            def onQueryProgress(self, event: Any) -> None:
                metrics.observe_progress(event.progress)

            def onQueryIdle(self, event: Any) -> None:
                pass

            def onQueryTerminated(self, event: Any) -> None:
                pass

        self._listener = Progress()
        spark.streams.addListener(self._listener)

    def unlisten(self, spark: SparkSession) -> None:
        if self._listener is not None:
            spark.streams.removeListener(self._listener)
            self._listener = None

    def observe_progress(self, progress: Any) -> None:
        """One query progress (a listener event's ``StreamingQueryProgress``)."""
        data = json.loads(progress.json)
        name = (data.get("name") or "").removeprefix("simguard-")
        for source in data.get("sources", []):
            lag = (source.get("metrics") or {}).get("maxOffsetsBehindLatest")
            if lag is not None:
                self.lag.labels(name).set(float(lag))
        rate = data.get("processedRowsPerSecond")
        if rate is not None:
            self.rows_per_s.labels(name).set(float(rate))
