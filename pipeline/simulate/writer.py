"""Writing a simulation: CDRs as day-partitioned Parquet, the ground truth beside them.

Output layout (``OUT`` is ``--out``)::

    OUT/cdrs/day=YYYY-MM-DD/part-00000.parquet    canonical CDRs, features.schema.arrow_schema(),
                                                   sorted by start_time (event-time order)
    OUT/labels/sims.parquet                        one row per calling entity (SIM_LABEL_SCHEMA)
    OUT/labels/calls.parquet                       one row per CDR: spoofed, spoof_kind
    OUT/labels/registered_businesses.parquet       numbers registered by businesses (allowlist)
    OUT/manifest.json                              seed, parameters, counts; written last

Labels never enter the CDR files, so a model cannot read them by accident.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.schema import CDR_FIELDS, EVENT_TYPES, RELEASE_CAUSES, TRUNK_TYPES, arrow_schema
from pipeline.simulate.config import SPOOF_KINDS, OutputConfig
from pipeline.simulate.numbers import digit_strings, e164_strings
from pipeline.simulate.populations import LABELS, POPULATIONS, US, World
from pipeline.simulate.traffic.events import ANSWERED, Events

CDR_DIR = "cdrs"
LABEL_DIR = "labels"
MANIFEST = "manifest.json"

_TS = pa.timestamp("us", tz="UTC")

SIM_LABEL_SCHEMA = pa.schema(
    [
        pa.field("a_number", pa.string(), nullable=False),
        pa.field("a_imsi", pa.string()),
        pa.field("a_imei", pa.string()),
        pa.field("operator", pa.string()),
        pa.field("label", pa.string(), nullable=False),
        pa.field("population", pa.string(), nullable=False),
        pa.field("group_id", pa.string()),
        pa.field("registered", pa.bool_(), nullable=False),
        pa.field("activity_start", _TS, nullable=False),
    ]
)
CALL_LABEL_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("spoofed", pa.bool_(), nullable=False),
        pa.field("spoof_kind", pa.string()),
    ]
)
REGISTERED_SCHEMA = pa.schema(
    [
        pa.field("number", pa.string(), nullable=False),
        pa.field("operator", pa.string()),
        pa.field("population", pa.string(), nullable=False),
        pa.field("business_id", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("registered_since", _TS, nullable=False),
    ]
)


def day_dir(out_dir: Path, date: dt.date) -> Path:
    return out_dir / CDR_DIR / f"day={date.isoformat()}"


def cdr_files(path: str | Path) -> list[Path]:
    """CDR files of an output folder (or its ``cdrs`` folder) in event-time order."""
    root = Path(path)
    if (root / CDR_DIR).is_dir():
        root = root / CDR_DIR
    return sorted(root.glob("day=*/part-*.parquet"))


def _take(values: pa.Array, index: np.ndarray, *, null: np.ndarray | None = None) -> pa.Array:
    return values.take(pa.array(index.astype(np.int32), mask=null))


@dataclass(frozen=True)
class _Vocab:
    operators: pa.Array
    cell_ids: pa.Array
    lacs: pa.Array
    trunk_names: pa.Array
    event_types: pa.Array
    causes: pa.Array
    trunk_types: pa.Array
    spoof_kinds: pa.Array

    @classmethod
    def of(cls, world: World) -> _Vocab:
        return cls(
            operators=pa.array(list(world.operators), pa.string()),
            cell_ids=pa.array(world.cells.cell_id, pa.string()),
            lacs=pa.array(world.cells.lac, pa.string()),
            trunk_names=pa.array(world.trunk_names, pa.string()),
            event_types=pa.array(list(EVENT_TYPES), pa.string()),
            causes=pa.array(list(RELEASE_CAUSES), pa.string()),
            trunk_types=pa.array(list(TRUNK_TYPES), pa.string()),
            spoof_kinds=pa.array(list(SPOOF_KINDS), pa.string()),
        )


class SimulationWriter:
    """Writes one day at a time; keeps the per-call label file open across days."""

    def __init__(self, world: World, out_dir: Path, output: OutputConfig) -> None:
        self.world = world
        self.out_dir = out_dir
        self.output = output
        self.vocab = _Vocab.of(world)
        self.compression = None if output.compression == "none" else output.compression
        (out_dir / LABEL_DIR).mkdir(parents=True, exist_ok=True)
        self._calls = pq.ParquetWriter(
            out_dir / LABEL_DIR / "calls.parquet", CALL_LABEL_SCHEMA, compression=self.compression
        )
        self.files: list[str] = []

    def cdr_table(self, ev: Events, *, date: dt.date) -> pa.Table:
        v = self.vocab
        n = len(ev)
        seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), 9, "0")
        record_id = pc.binary_join_element_wise(pa.scalar(f"SG{date:%Y%m%d}-"), seq, "")
        answered = ev.cause == ANSWERED
        answer_us = ev.t_us + np.rint(ev.ring_s * US).astype(np.int64) * ~ev.sms
        no_cell = ev.cell < 0
        no_trunk = ev.trunk_id < 0
        cols: dict[str, pa.Array] = {
            "record_id": record_id,
            "operator": _take(v.operators, ev.op),
            "event_type": _take(v.event_types, ev.sms.astype(np.int8)),
            "a_number": e164_strings(ev.a_num),
            "b_number": e164_strings(ev.b_num),
            "a_imsi": digit_strings(ev.imsi),
            "a_imei": digit_strings(ev.imei),
            "start_time": pa.array(ev.t_us, type=_TS),
            "answer_time": pa.array(answer_us, type=_TS, mask=~answered),
            "duration_s": pa.array(ev.dur_s, type=pa.float64()),
            "release_cause": _take(v.causes, ev.cause),
            "cell_id": _take(v.cell_ids, np.maximum(ev.cell, 0), null=no_cell),
            "lac": _take(v.lacs, np.maximum(ev.cell, 0), null=no_cell),
            "in_trunk_type": _take(v.trunk_types, ev.trunk),
            "in_trunk_id": _take(v.trunk_names, np.maximum(ev.trunk_id, 0), null=no_trunk),
            "a_roaming": pa.array(ev.roaming, type=pa.bool_()),
        }
        return pa.Table.from_arrays([cols[f.name] for f in CDR_FIELDS], schema=arrow_schema())

    def write_day(self, ev: Events, *, date: dt.date) -> int:
        """Write one day's events (already in event-time order); returns the row count."""
        table = self.cdr_table(ev, date=date)
        folder = day_dir(self.out_dir, date)
        folder.mkdir(parents=True, exist_ok=True)
        step = self.output.rows_per_file
        for part, start in enumerate(range(0, max(len(table), 1), step)):
            path = folder / f"part-{part:05d}.parquet"
            pq.write_table(
                table.slice(start, step),
                path,
                compression=self.compression,
                row_group_size=self.output.row_group_size,
            )
            self.files.append(path.relative_to(self.out_dir).as_posix())
        spoofed = ev.spoof >= 0
        labels = pa.Table.from_arrays(
            [
                table.column("record_id").combine_chunks(),
                pa.array(spoofed, type=pa.bool_()),
                _take(self.vocab.spoof_kinds, np.maximum(ev.spoof, 0), null=~spoofed),
            ],
            schema=CALL_LABEL_SCHEMA,
        )
        self._calls.write_table(labels, row_group_size=self.output.row_group_size)
        return len(table)

    def close(self) -> None:
        self._calls.close()

    def write_entities(self) -> None:
        """``sims.parquet`` and ``registered_businesses.parquet``."""
        w = self.world
        pop_names = pa.array(list(POPULATIONS), pa.string())
        label_names = pa.array(list(LABELS), pa.string())
        population = _take(pop_names, w.population)
        group_id = pc.binary_join_element_wise(population, pc.utf8_lpad(digit_strings(w.group), 5, "0"), "-")
        operator = _take(self.vocab.operators, np.maximum(w.operator, 0), null=w.operator < 0)
        sims = pa.Table.from_arrays(
            [
                e164_strings(w.number),
                digit_strings(w.imsi),
                digit_strings(w.imei),
                operator,
                _take(label_names, w.label),
                population,
                group_id,
                pa.array(w.registered, pa.bool_()),
                pa.array(w.activity_start_us, type=_TS),
            ],
            schema=SIM_LABEL_SCHEMA,
        )
        pq.write_table(sims, self.out_dir / LABEL_DIR / "sims.parquet", compression=self.compression)
        reg = np.flatnonzero(w.registered)
        channel = np.where(w.imsi[reg] >= 0, "mobile", "interconnect")
        registered = pa.Table.from_arrays(
            [
                sims.column("a_number").take(reg),
                sims.column("operator").take(reg),
                sims.column("population").take(reg),
                sims.column("group_id").take(reg),
                pa.array(channel, pa.string()),
                sims.column("activity_start").take(reg),
            ],
            schema=REGISTERED_SCHEMA,
        )
        pq.write_table(
            registered, self.out_dir / LABEL_DIR / "registered_businesses.parquet", compression=self.compression
        )


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Sorted keys, no wall-clock times: the same run gives the same bytes."""
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    (out_dir / MANIFEST).write_text(text + "\n", encoding="utf-8")
