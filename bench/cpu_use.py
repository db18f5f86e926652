"""CPU seconds by kind of process, for the benchmarks (Linux /proc)."""

from __future__ import annotations

import os
from pathlib import Path


def process_cpu() -> dict[str, float]:
    """CPU seconds used so far, by kind of process: Spark (the JVM and its Python workers), the
    Kafka broker, this driver's Python process and the rest of the machine (Linux /proc). A
    child's time counts towards its parent once reaped, so Python workers that exited during the
    job reach the JVM's total through their daemon: the two are one figure."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"spark": 0.0, "kafka_broker": 0.0, "driver": 0.0, "other": 0.0}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        used = sum(int(x) for x in fields[11:15]) / tick  # utime, stime, cutime, cstime
        if int(proc.name) == os.getpid():
            kind = "driver"
        elif "kafka.Kafka" in cmd:
            kind = "kafka_broker"
        elif "pyspark.daemon" in cmd or "pyspark.worker" in cmd or ("java" in cmd and "SparkSubmit" in cmd):
            kind = "spark"
        else:
            kind = "other"
        out[kind] += used
    return out
