"""Analysts' outcomes as training rows (``simguard labels export`` writes the table): a confirmed
flag is its fraud type (the spoof model: spoofed), an overturn is ``normal`` (legitimate).

Each label names the model's row it judged: a SIM and the end of its window, or a trunk call's
record id. That row becomes a training row with the analyst's label: a training row already
there is relabelled; the same row in validation or test is moved to training (it is no longer
scored where it was learnt); a row the feature tables do not hold is built from the feature
values the stream stored with the decision (``f_<feature>`` columns).

>>> extra = pd.DataFrame({"number": ["+84961"], "label": ["normal"], "kind": ["sim"],
...                       "window_end": [pd.Timestamp("2026-11-02T07:00Z")], "f_calls_out_24h": [212.0]})
>>> len(task_labels(extra, task="spam-sim", classes=("normal", "spam_robocall")))
1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.sim import ENTITY, WINDOW_END, WINDOW_START
from models.dataset import ACTIVE, ALLOWLISTED, LABEL, POPULATION, ROW_END, ROW_START, UNIT, UNIT_CLASS
from models.errors import ModelError
from models.split import Split

#: the population added rows are reported under
ANALYST = "analyst_label"
#: labels the export writes for a call, mapped to the spoof model's classes
CALL_LABELS = {"normal": "legitimate", "legitimate": "legitimate", "spoofed_call": "spoofed", "spoofed": "spoofed"}


def read_extra_labels(path: str | Path) -> pd.DataFrame:
    """The label table (``.parquet`` or ``.csv``), checked for the columns training needs."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"extra labels {path} not found: write them with `simguard labels export --out {path}`")
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype={"number": str, "record_id": str})
        if "record_id" in frame.columns:  # the export's guard against spreadsheet formulas, undone
            frame["record_id"] = frame["record_id"].str.replace(r"^'(?=[=+\-@\t\r])", "", regex=True)
    else:
        frame = pd.read_parquet(path)
    missing = [c for c in ("number", "label", "window_end") if c not in frame.columns]
    if missing:
        raise ModelError(f"{path}: missing column(s) {missing}; expected the table `simguard labels export` writes")
    for col in ("window_start", "window_end"):
        if col in frame.columns:
            frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def task_labels(extra: pd.DataFrame, *, task: str, classes: tuple[str, ...]) -> pd.DataFrame:
    """The labels of one task with their row key (``unit``, ``row_end`` for SIMs) and class index;
    the last label of a row wins."""
    kind = extra["kind"] if "kind" in extra.columns else pd.Series("sim", index=extra.index)
    if task == "spoof-call":
        record = extra.get("record_id", pd.Series(None, index=extra.index, dtype=object))
        rows = extra[kind.eq("call") & record.notna()].copy()
        rows["class_name"] = rows["label"].map(CALL_LABELS)
        rows[UNIT] = rows["record_id"].astype(str)
        keys = [UNIT]
    else:
        rows = extra[kind.eq("sim") & extra["window_end"].notna()].copy()
        rows["class_name"] = rows["label"].astype(str)
        rows[UNIT] = rows["number"].astype(str)
        rows[ROW_END] = pd.to_datetime(rows["window_end"], utc=True)
        keys = [UNIT, ROW_END]
    rows = rows[rows["class_name"].isin(classes)]
    rows[LABEL] = rows["class_name"].map({name: i for i, name in enumerate(classes)}).astype(np.int32)
    return rows.drop_duplicates(keys, keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class ExtraLabelCounts:
    #: analysts' labels that became training rows (the sum of the three below)
    used: int = 0
    #: training rows whose label the analyst's replaced
    relabelled: int = 0
    #: validation or test rows moved to training
    moved: int = 0
    #: rows built from the stored feature values
    added: int = 0


def _keys(frame: pd.DataFrame, task: str) -> pd.Series:
    if task == "spoof-call":
        return frame[UNIT].astype(str)
    return frame[UNIT].astype(str) + "|" + pd.to_datetime(frame[ROW_END], utc=True).astype("int64").astype(str)


def _built_rows(labels: pd.DataFrame, feature_names: tuple[str, ...], dtypes: pd.Series) -> pd.DataFrame:
    """Training rows from the feature values stored with the decisions (SIM windows)."""
    out = pd.DataFrame(index=labels.index)
    for name in feature_names:
        col = f"f_{name}"
        out[name] = pd.to_numeric(labels[col], errors="coerce") if col in labels.columns else np.nan
    start = labels["window_start"] if "window_start" in labels.columns else labels[ROW_END]
    out[ENTITY] = labels["number"].astype(str)
    out[WINDOW_START] = pd.to_datetime(start, utc=True)
    out[WINDOW_END] = labels[ROW_END]
    out[UNIT] = labels[UNIT]
    out[ROW_START] = out[WINDOW_START]
    out[ROW_END] = labels[ROW_END]
    out[LABEL] = labels[LABEL]
    out[UNIT_CLASS] = labels["class_name"]
    out[POPULATION] = ANALYST
    out[ACTIVE] = True
    out[ALLOWLISTED] = False
    out = out[[c for c in dtypes.index if c in out.columns]]
    for col in (WINDOW_START, WINDOW_END):
        # the feature tables' time columns may be naive UTC: match them so concat keeps a datetime
        if col in dtypes and isinstance(dtypes[col], np.dtype) and dtypes[col].kind == "M":
            out[col] = out[col].dt.tz_convert(None).astype(dtypes[col])
    return out


def without_labelled(frame: pd.DataFrame, extra: pd.DataFrame, *, task: str, classes: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` without the rows the analysts labelled: those train, they choose no threshold."""
    labels = task_labels(extra, task=task, classes=classes)
    if labels.empty:
        return frame
    return frame[~_keys(frame, task).isin(set(_keys(labels, task))).to_numpy()].reset_index(drop=True)


def add_extra_labels(
    split: Split, extra: pd.DataFrame, *, task: str, classes: tuple[str, ...], feature_names: tuple[str, ...]
) -> tuple[Split, ExtraLabelCounts]:
    """``split`` with the analysts' labels of ``task`` in its training rows (see the module)."""
    labels = task_labels(extra, task=task, classes=classes)
    if labels.empty:
        return split, ExtraLabelCounts()
    wanted = pd.Series(labels[LABEL].to_numpy(), index=_keys(labels, task))
    train = split.train.copy()
    in_train = _keys(train, task).map(wanted)
    train.loc[in_train.notna().to_numpy(), LABEL] = in_train.dropna().astype(np.int32).to_numpy()
    found = set(_keys(train, task)[in_train.notna()])
    kept, moved = [], []
    for frame in (split.validation, split.test):
        hit = _keys(frame, task).isin(wanted.index).to_numpy()
        rows = frame[hit].copy()
        rows[LABEL] = _keys(rows, task).map(wanted).astype(np.int32).to_numpy()
        moved.append(rows)
        found |= set(_keys(rows, task))
        kept.append(frame[~hit])
    missing = labels[~_keys(labels, task).isin(found).to_numpy()]
    # a trunk call's row cannot be rebuilt from a SIM-style snapshot: only SIM windows are added
    built = _built_rows(missing, feature_names, train.dtypes) if task != "spoof-call" else train.iloc[:0]
    parts = [p for p in (train, *moved, built) if not p.empty]
    train = pd.concat(parts, ignore_index=True) if len(parts) > 1 else train
    counts = ExtraLabelCounts(
        used=int(in_train.notna().sum()) + sum(len(m) for m in moved) + len(built),
        relabelled=int(in_train.notna().sum()),
        moved=sum(len(m) for m in moved),
        added=len(built),
    )
    return Split(train=train, validation=kept[0], test=kept[1]), counts
