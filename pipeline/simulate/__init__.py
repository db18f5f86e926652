"""Synthetic CDRs with ground truth: ``simguard simulate`` and the Kafka replay.

>>> from pipeline.simulate import simulate                      # doctest: +SKIP
>>> result = simulate("out/sim", subscribers=3000, days=1, seed=7)  # doctest: +SKIP
>>> result.manifest["populations"]["simbox"]["entities"]         # doctest: +SKIP

Modules: ``config`` (the YAML models), ``numbers`` (identities as integers), ``graph`` (the
social graph), ``populations`` (who exists), ``build`` and ``sim_builders`` (building it, one
population at a time), ``traffic`` (one day of calls per population), ``writer`` (Parquet and
labels), ``engine`` (the day loop), ``replay`` (Parquet to Kafka).
"""

from __future__ import annotations

from pipeline.simulate.config import (
    DEFAULT_SIMULATOR_CONFIG,
    SPOOF_KINDS,
    SimulatorConfig,
    load_simulator_config,
)
from pipeline.simulate.engine import SimulationResult, simulate
from pipeline.simulate.populations import LABELS, POPULATION_LABEL, POPULATIONS, SimulationError
from pipeline.simulate.replay import count_records, replay_to_kafka
from pipeline.simulate.writer import (
    CALL_LABEL_SCHEMA,
    REGISTERED_SCHEMA,
    SIM_LABEL_SCHEMA,
    cdr_files,
)

__all__ = [
    "CALL_LABEL_SCHEMA",
    "DEFAULT_SIMULATOR_CONFIG",
    "LABELS",
    "POPULATIONS",
    "POPULATION_LABEL",
    "REGISTERED_SCHEMA",
    "SIM_LABEL_SCHEMA",
    "SPOOF_KINDS",
    "SimulationError",
    "SimulationResult",
    "SimulatorConfig",
    "cdr_files",
    "count_records",
    "load_simulator_config",
    "replay_to_kafka",
    "simulate",
]
