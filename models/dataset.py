"""Labelled training frames from feature tables and the simulator's (or analysts') labels.

Both models share one frame layout so that splitting, evaluation and the baseline treat them
alike. Besides the feature columns, a labelled frame carries:

``unit``         the entity scored per row: the SIM (``entity``) or the call (``record_id``);
``row_start`` / ``row_end``  the time the row's features cover (window or call start);
``label``        the row's class index (training target);
``unit_class``   the unit's true class (a fraud SIM stays ``simbox`` in every window);
``population``   the finer group (``simbox_evasive``, ``call_centre``, ``roamer`` ...);
``active``       the row overlaps the fraud (for normal units: always true); a fraud SIM is a
                 positive in a split only when one of its rows there is active.

Labels contract (``simguard simulate`` writes it): ``labels/sims.parquet`` has ``a_number``,
``label`` in :data:`SIM_CLASSES`, ``population`` and ``activity_start`` (UTC);
``labels/calls.parquet`` has ``record_id``, ``spoofed`` and ``spoof_kind``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.sim import ENTITY, WINDOW_END, WINDOW_START
from models.errors import ModelError

SIM_CLASSES: tuple[str, ...] = ("normal", "spam_robocall", "simbox", "wangiri")
CALL_CLASSES: tuple[str, ...] = ("legitimate", "spoofed")

UNIT = "unit"
ROW_START = "row_start"
ROW_END = "row_end"
LABEL = "label"
UNIT_CLASS = "unit_class"
POPULATION = "population"
ACTIVE = "active"
#: the unit is on the allowlist the policy applies (emergency and short codes, registered
#: businesses): never blocked, so operating points count it as not flagged
ALLOWLISTED = "allowlisted"
META_COLUMNS: tuple[str, ...] = (UNIT, ROW_START, ROW_END, LABEL, UNIT_CLASS, POPULATION, ACTIVE, ALLOWLISTED)

#: calling numbers that are not in the SIM labels (foreign callers, victims of spoofing)
UNLABELLED = "unlabelled"

SIM_LABELS_FILE = "sims.parquet"
CALL_LABELS_FILE = "calls.parquet"


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def read_labels(labels_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(sim_labels, call_labels)`` from a labels folder, checked against the contract."""
    folder = Path(labels_dir)
    sims_path, calls_path = folder / SIM_LABELS_FILE, folder / CALL_LABELS_FILE
    for path in (sims_path, calls_path):
        if not path.exists():
            raise ModelError(f"label file {path} not found: pass the labels/ folder `simguard simulate` wrote")
    sims = pd.read_parquet(sims_path)
    calls = pd.read_parquet(calls_path)
    _require(sims, ("a_number", "label", "population", "activity_start"), sims_path)
    _require(calls, ("record_id", "spoofed", "spoof_kind"), calls_path)
    unknown = sorted(set(sims["label"].astype(str)) - set(SIM_CLASSES))
    if unknown:
        raise ModelError(f"{sims_path}: unknown SIM label(s) {unknown}; expected one of {list(SIM_CLASSES)}")
    return sims, calls


def _require(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ModelError(f"{path}: missing column(s) {missing}")


def label_sim_rows(features: pd.DataFrame, sim_labels: pd.DataFrame) -> pd.DataFrame:
    """Per-SIM window rows with labels; a fraud SIM's window is positive once it overlaps the
    SIM's activity (``window_end > activity_start``), before that it is a normal window."""
    labels = (
        sim_labels[["a_number", "label", "population", "activity_start"]]
        .drop_duplicates("a_number")
        .rename(columns={"a_number": ENTITY, "label": UNIT_CLASS, "population": POPULATION})
    )
    out = features.merge(labels, on=ENTITY, how="left")
    out[UNIT_CLASS] = out[UNIT_CLASS].fillna("normal").astype(str)
    out[POPULATION] = out[POPULATION].fillna(UNLABELLED).astype(str)
    out[UNIT] = out[ENTITY].astype(str)
    out[ROW_START] = _utc(out[WINDOW_START])
    out[ROW_END] = _utc(out[WINDOW_END])
    fraud = out[UNIT_CLASS] != "normal"
    started = _utc(out["activity_start"])
    # a fraud SIM with no activity start is taken as active throughout
    overlaps = started.isna() | (out[ROW_END] > started)
    out[ACTIVE] = ~fraud | overlaps.to_numpy()
    codes = {name: i for i, name in enumerate(SIM_CLASSES)}
    out[LABEL] = np.where(fraud & out[ACTIVE], out[UNIT_CLASS].map(codes), 0).astype(np.int32)
    return out.drop(columns=["activity_start"]).sort_values([UNIT, ROW_START], kind="stable").reset_index(
        drop=True
    )


def label_call_rows(features: pd.DataFrame, call_labels: pd.DataFrame) -> pd.DataFrame:
    """Trunk-call rows with labels; calls missing from the labels are legitimate.

    Legitimate calls are grouped by how they entered (and roamers apart, the look-alike that
    breaks the "domestic CLI on an international trunk" rule) so that FPR shows per group.
    """
    labels = call_labels[["record_id", "spoofed", "spoof_kind"]].drop_duplicates("record_id")
    out = features.merge(labels, on="record_id", how="left")
    spoofed = out["spoofed"].eq(True).to_numpy()  # missing: legitimate
    out[UNIT] = out["record_id"].astype(str)
    out[ROW_START] = _utc(out["start_time"])
    out[ROW_END] = out[ROW_START]
    out[UNIT_CLASS] = np.where(spoofed, CALL_CLASSES[1], CALL_CLASSES[0])
    legit_group = np.where(
        (out["domestic_cli_on_international"] == 1) & (out["cli_owner_roaming"] == 1),
        "roamer",
        out["in_trunk_type"].astype(str),
    )
    kind = out["spoof_kind"].astype(object).where(out["spoof_kind"].notna(), "spoofed").astype(str)
    out[POPULATION] = np.where(spoofed, kind, legit_group)
    out[ACTIVE] = True
    out[LABEL] = spoofed.astype(np.int32)
    return out.drop(columns=["spoofed", "spoof_kind"]).sort_values(UNIT, kind="stable").reset_index(drop=True)
