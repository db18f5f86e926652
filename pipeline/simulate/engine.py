"""``simulate()``: build the network, generate day after day, write CDRs and labels."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.numbering import NumberingPlan, load_numbering_plan
from features.schema import EVENT_TYPES, RELEASE_CAUSES, TRUNK_TYPES
from pipeline.simulate.build import build_world
from pipeline.simulate.config import SPOOF_KINDS, SimulatorConfig, load_simulator_config
from pipeline.simulate.populations import (
    DAY_US,
    LABELS,
    POPULATIONS,
    SimulationError,
)
from pipeline.simulate.traffic import GENERATORS, generate
from pipeline.simulate.traffic.day import Day
from pipeline.simulate.traffic.events import Events
from pipeline.simulate.traffic.people import gen_callbacks
from pipeline.simulate.writer import CDR_DIR, LABEL_DIR, MANIFEST, SimulationWriter, write_manifest

#: ``progress(description, completed, total)``
ProgressFn = Callable[[str, int, int], None]

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SimulationResult:
    out_dir: Path
    manifest: dict[str, Any]

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"]["cdrs"])


def _prepare(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SimulationError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists():
        raise SimulationError(f"{out_dir} is not empty and holds no simulator output; choose a new or empty folder")
    # a previous simulation in the same folder is replaced as a whole, never mixed with this one
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for sub in (CDR_DIR, LABEL_DIR):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _counts(values: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
    c = np.bincount(values.astype(np.int64), minlength=len(names))
    return {name: int(c[i]) for i, name in enumerate(names)}


def simulate(
    out_dir: str | Path,
    *,
    subscribers: int,
    days: int,
    seed: int,
    config: SimulatorConfig | None = None,
    plan: NumberingPlan | None = None,
    progress: ProgressFn | None = None,
) -> SimulationResult:
    """Generate ``days`` days of CDRs for ``subscribers`` SIMs into ``out_dir``.

    Deterministic: the same arguments give byte-identical files. See ``writer`` for the layout.
    """
    config = config or load_simulator_config()
    if plan is None:
        plan = load_numbering_plan(config.network.numbering_plan)
    out = Path(out_dir)
    total_steps = 2 + days * (len(GENERATORS) + 2)
    done = 0

    def tick(description: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(description, done, total_steps)

    _prepare(out)
    world = build_world(config, subscribers=subscribers, days=days, seed=seed, plan=plan)
    tick("built the network")

    writer = SimulationWriter(world, out, config.output)
    seen = np.zeros(world.n_entities, dtype=bool)
    per_day: dict[str, int] = {}
    records_by_population = np.zeros(len(POPULATIONS), dtype=np.int64)
    event_types = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    trunks = np.zeros(len(TRUNK_TYPES), dtype=np.int64)
    causes = np.zeros(len(RELEASE_CAUSES), dtype=np.int64)
    spoofed = np.zeros(len(SPOOF_KINDS), dtype=np.int64)
    carry = Events.empty()
    try:
        for d in range(days):
            day = Day(world, d)
            date = config.network.start_date + dt.timedelta(days=d)
            parts = []
            for name in GENERATORS:
                parts.append(generate(world, day, name))
                tick(f"{date} {name}")
            originals = Events.concat(parts)
            callbacks = gen_callbacks(world, day, originals)
            everything = Events.concat([carry, originals, callbacks])
            # nobody reaches a SIM before it is activated (fresh SIMs, rotating robocall SIMs)
            callee = world.entity_of(everything.b_num)
            reachable = (callee < 0) | (world.activity_start_us[np.maximum(callee, 0)] <= everything.t_us)
            everything = everything.take(np.flatnonzero(reachable))
            later = everything.t_us >= day.start_us + DAY_US
            # calls that start after midnight (call-backs, late bursts) belong to the next day
            carry = everything.take(np.flatnonzero(later))
            today = everything.take(np.flatnonzero(~later))
            today = today.take(np.argsort(today.t_us, kind="stable"))
            tick(f"{date} callbacks")
            per_day[date.isoformat()] = writer.write_day(today, date=date)
            tick(f"{date} written")

            known = today.caller >= 0
            seen[today.caller[known]] = True
            records_by_population += np.bincount(world.population[today.caller[known]], minlength=len(POPULATIONS))
            event_types += np.bincount(today.sms.astype(np.int64), minlength=len(EVENT_TYPES))
            trunks += np.bincount(today.trunk.astype(np.int64), minlength=len(TRUNK_TYPES))
            causes += np.bincount(today.cause.astype(np.int64), minlength=len(RELEASE_CAUSES))
            spoofed += np.bincount(today.spoof[today.spoof >= 0].astype(np.int64), minlength=len(SPOOF_KINDS))
        writer.write_entities()
    finally:
        writer.close()

    population_counts = _counts(world.population, POPULATIONS)
    active = _counts(world.population[seen], POPULATIONS)
    manifest: dict[str, Any] = {
        "generator": "simguard simulate",
        "manifest_version": MANIFEST_VERSION,
        "seed": seed,
        "params": {
            "subscribers": subscribers,
            "days": days,
            "start_date": config.network.start_date.isoformat(),
            "utc_offset_hours": config.network.utc_offset_hours,
        },
        "config": config.model_dump(mode="json"),
        "populations": {
            p: {"entities": population_counts[p], "with_records": active[p], "records": int(records_by_population[i])}
            for i, p in enumerate(POPULATIONS)
        },
        "labels": _counts(world.label, LABELS),
        "label_noise": world.label_noise,
        "robocall_operations": len(world.robocall_ops),
        "simboxes": {p: len(b.box_sims_len) for p, b in world.boxes.items()},
        "wangiri_campaigns": len(world.wangiri_campaigns),
        "registered_businesses": int(world.registered.sum()),
        "rows": {
            "cdrs": int(sum(per_day.values())),
            "per_day": per_day,
            "event_type": dict(zip(EVENT_TYPES, map(int, event_types), strict=True)),
            "in_trunk_type": dict(zip(TRUNK_TYPES, map(int, trunks), strict=True)),
            "release_cause": dict(zip(RELEASE_CAUSES, map(int, causes), strict=True)),
            "spoofed": dict(zip(SPOOF_KINDS, map(int, spoofed), strict=True)),
            "sims": world.n_entities,
        },
        "files": {
            "cdrs": writer.files,
            "sims": f"{LABEL_DIR}/sims.parquet",
            "calls": f"{LABEL_DIR}/calls.parquet",
            "registered_businesses": f"{LABEL_DIR}/registered_businesses.parquet",
        },
    }
    write_manifest(out, manifest)
    tick("wrote labels and manifest")
    return SimulationResult(out_dir=out, manifest=manifest)
