"""The dossier of one registered model version: what a regulator asks of a high-risk system's
technical documentation (intended use, data, features, performance per fraud type and per
legitimate population beside the rules baseline, targets with pass or fail, the settings in
force, limitations, champion history), as a JSON-able dict and as Markdown.

Built from the evaluation report ``models.tasks.evaluate_model`` writes, so the dossier's numbers
are the ones logged as the version's metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from models.dataset import LABEL, UNIT

INTENDED_USE = {
    "spam-sim": (
        "Flags SIMs behaving as spam/robocall sources, SIM-box bypass or Wangiri from their last 24 h and 1 h "
        "of CDRs, so that the operator's blocklist bars them (above the block level) or an analyst reviews "
        "them (between the review and block levels). Not for judging a subscriber's identity, credit or "
        "anything beyond call-fraud blocking."
    ),
    "spoof-call": (
        "Flags single calls whose presented CLI is likely spoofed on an ingress trunk, so that calls "
        "presenting that CLI on that kind of trunk are rejected (a trunk-scoped rule: the number belongs "
        "to a victim and is never blocked as such)."
    ),
}

LIMITATIONS = (
    "Scores depend on the behaviour of the training period; new fraud patterns or a changed "
    "subscriber mix move the false-positive rate until the next retraining.",
    "Labels of simulated data are the simulator's ground truth; on operator data they are the "
    "operator's and analysts' labels and inherit their gaps.",
    "Legitimate high-volume callers (call centres, delivery dispatch, registered businesses) look "
    "like spam: the allowlist, not the model, protects the registered ones.",
    "Metrics are measured on the test days only; populations with few units there have wide "
    "uncertainty.",
)


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _target(name: str, value: Any, limit: float, *, at_most: bool = True) -> dict[str, Any]:
    v = _num(value)
    ok = v is not None and (v <= limit if at_most else v > limit)
    return {"target": name, "value": v, "limit": limit, "result": "pass" if ok else "fail"}


def targets(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each target of the version with its measured value and ``pass`` or ``fail``."""
    target_fpr = float(report["target_fpr"])
    test = report["test"]
    out = [_target(f"test FPR <= {target_fpr:.3%}", test.get("fpr"), target_fpr)]
    for population, fpr in sorted((test.get("fpr_by_population") or {}).items()):
        out.append(_target(f"test FPR of legitimate population '{population}' <= {target_fpr:.3%}", fpr, target_fpr))
    gain = (report.get("comparison") or {}).get("recall_gain_at_baseline_fpr")
    out.append(_target("recall gain over the rules baseline at the baseline's FPR > 0", gain, 0.0, at_most=False))
    return out


def data_summary(
    splits: Mapping[str, pd.DataFrame], *, source: str, label_sources: Sequence[str], boundaries: Mapping[str, Any]
) -> dict[str, Any]:
    """Rows per split and per label, distinct units (SIMs or calls), the date range."""
    rows = {name: len(frame) for name, frame in splits.items()}
    by_type: dict[str, dict[str, int]] = {}
    units: set[Any] = set()
    for name, frame in splits.items():
        if LABEL in frame:
            by_type[name] = {str(k): int(v) for k, v in frame[LABEL].value_counts().sort_index().items()}
        if UNIT in frame:
            units.update(frame[UNIT].unique().tolist())
    return {"source": source, "date_range": dict(boundaries), "units": len(units), "rows_per_split": rows,
            "rows_per_label": by_type, "label_sources": list(label_sources)}


def build_dossier(
    *,
    registered_name: str,
    version: int,
    task: str,
    report: Mapping[str, Any],
    data: Mapping[str, Any],
    features: Mapping[str, str],
    threshold: float,
    policy: Mapping[str, Any],
    cold_threshold: float | None = None,
    allowlist_sources: Sequence[str],
    champion_history: Sequence[Mapping[str, Any]] = (),
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    test, base = report["test"], report["baseline"]["test"]
    by_type = {
        t: {"model_recall": _num(v), "baseline_recall": _num((base.get("recall_by_type") or {}).get(t))}
        for t, v in sorted((test.get("recall_by_type") or {}).items())
    }
    by_population = {
        p: {"model_fpr": _num(v), "baseline_fpr": _num((base.get("fpr_by_population") or {}).get(p))}
        for p, v in sorted((test.get("fpr_by_population") or {}).items())
    }
    overall = {k: {"model": _num(test.get(k)), "baseline": _num(base.get(k))}
               for k in ("recall_at_fpr", "fpr", "precision", "pr_auc", "roc_auc")}
    return {
        "registered_name": registered_name,
        "version": int(version),
        "task": task,
        "intended_use": INTENDED_USE.get(task, ""),
        "data": dict(data),
        "features": dict(features),
        "metrics": {"test": overall, "by_fraud_type": by_type, "by_legitimate_population": by_population,
                    "n_positive": test.get("n_positive"), "n_negative": test.get("n_negative")},
        "targets": targets(report),
        "settings_in_force": {"threshold": float(threshold), "target_fpr": float(report["target_fpr"]),
                              "policy": dict(policy), "allowlist_sources": list(allowlist_sources),
                              **_cold(cold_threshold, report)},
        "known_limitations": list(LIMITATIONS),
        "champion_history": [dict(h) for h in champion_history],
        "provenance": dict(provenance or {}),
    }


def _cold(cold_threshold: float | None, report: Mapping[str, Any]) -> dict[str, Any]:
    """The threshold for rows a stream scores before it has a day of records, with what it
    gave on the validation days computed from their own records alone."""
    if cold_threshold is None:
        return {}
    cold = report.get("cold_validation") or {}
    return {"cold_threshold": float(cold_threshold),
            "cold_validation": {k: _num(cold.get(k)) for k in ("recall_at_fpr", "fpr", "precision")}}


def _fmt(value: Any, pct: bool = False) -> str:
    v = _num(value)
    if v is None:
        return "n/a"
    return f"{v:.3%}" if pct else f"{v:.4f}"


def to_markdown(d: Mapping[str, Any]) -> str:
    lines = [f"# Dossier: {d['registered_name']} version {d['version']}", "", "## Intended use", "",
             d["intended_use"], "", "## Data", ""]
    data = d["data"]
    lines += [f"- source: {data.get('source')}", f"- date range: {data.get('date_range')}",
              f"- distinct units: {data.get('units')}", f"- rows per split: {data.get('rows_per_split')}",
              f"- rows per label: {data.get('rows_per_label')}",
              f"- label sources: {', '.join(data.get('label_sources') or [])}", "", "## Features", ""]
    lines += [f"- `{name}`: {text}" for name, text in d["features"].items()]
    lines += ["", "## Test metrics beside the rules baseline", "", "| metric | model | baseline |", "|---|---|---|"]
    for k, v in d["metrics"]["test"].items():
        pct = k in ("fpr", "recall_at_fpr", "precision")
        lines.append(f"| {k} | {_fmt(v['model'], pct)} | {_fmt(v['baseline'], pct)} |")
    lines += ["", "| fraud type | model recall | baseline recall |", "|---|---|---|"]
    lines += [f"| {t} | {_fmt(v['model_recall'], True)} | {_fmt(v['baseline_recall'], True)} |"
              for t, v in d["metrics"]["by_fraud_type"].items()]
    lines += ["", "| legitimate population | model FPR | baseline FPR |", "|---|---|---|"]
    lines += [f"| {p} | {_fmt(v['model_fpr'], True)} | {_fmt(v['baseline_fpr'], True)} |"
              for p, v in d["metrics"]["by_legitimate_population"].items()]
    lines += ["", "## Targets", "", "| target | value | result |", "|---|---|---|"]
    lines += [f"| {t['target']} | {_fmt(t['value'], 'FPR' in t['target'])} | **{t['result']}** |" for t in d["targets"]]
    s = d["settings_in_force"]
    lines += ["", "## Settings in force", "", f"- model threshold: {s['threshold']:.6f}",
              f"- target FPR: {s['target_fpr']:.3%}", f"- allowlist sources: {', '.join(s['allowlist_sources'])}"]
    if "cold_threshold" in s:
        c = s["cold_validation"]
        lines.append(f"- cold threshold (rows whose window reaches before a stream's first record): "
                     f"{s['cold_threshold']:.6f}; on the validation days computed from their own records alone: "
                     f"recall {_fmt(c['recall_at_fpr'], True)}, FPR {_fmt(c['fpr'], True)}, "
                     f"precision {_fmt(c['precision'], True)}")
    lines += [f"- policy `{k}`: {v}" for k, v in s["policy"].items()]
    lines += ["", "## Known limitations", ""] + [f"- {x}" for x in d["known_limitations"]]
    lines += ["", "## Champion history", ""]
    lines += [f"- {h.get('at')}: alias `{h.get('alias')}` -> version {h.get('version')} by {h.get('actor')}"
              for h in d["champion_history"]] or ["- never champion"]
    return "\n".join(lines) + "\n"
