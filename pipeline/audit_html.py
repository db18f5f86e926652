"""The regulator's report as one self-contained HTML file: tables, and plots embedded as PNG
``data:`` URIs (matplotlib, Agg backend), readable without a network."""

from __future__ import annotations

import base64
import io
import json
from html import escape
from typing import Any

from streaming.blocklist.audit_summary import COUNT_KINDS

PLOT_KINDS = ("blocks per day by fraud type", "overturn rate per model version", "hours to appeal decision",
              "test metrics per model version")

CSS = """body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:90%}th{background:#eee}
.fail{color:#b00;font-weight:bold}.pass{color:#070;font-weight:bold}code{font-size:85%}
.ok{background:#e8f5e9;padding:.5em}.broken{background:#fdecea;padding:.5em}"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.set_title(title)
    return fig, ax


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs, one per :data:`PLOT_KINDS`."""
    out = {}
    fig, ax = _figure(PLOT_KINDS[0])
    by_type = report["blocks_per_day_by_type"]
    days = sorted({d for v in by_type.values() for d in v})
    if days:
        bottom = [0] * len(days)
        for fraud_type, counts in by_type.items():
            values = [counts.get(d, 0) for d in days]
            ax.bar(days, values, bottom=bottom, label=fraud_type)
            bottom = [a + b for a, b in zip(bottom, values, strict=True)]
        ax.legend(fontsize=8)
        ax.set_ylabel("blocks")
    else:
        _empty(ax, "no blocks in the period")
    out[PLOT_KINDS[0]] = _png(fig)

    fig, ax = _figure(PLOT_KINDS[1])
    rates = {k: v["overturn_rate"] for k, v in report["overturn_rate_per_version"].items()
             if v["overturn_rate"] is not None}
    if rates:
        ax.bar(list(rates), [100 * v for v in rates.values()])
        ax.set_ylabel("% of blocks and reviews overturned")
        ax.tick_params(axis="x", labelsize=8)
    else:
        _empty(ax, "no decisions in the period")
    out[PLOT_KINDS[1]] = _png(fig)

    fig, ax = _figure(PLOT_KINDS[2])
    hours = report["appeals"]["hours_to_decision"]
    if hours:
        ax.hist(hours, bins=min(20, max(3, len(hours))))
        ax.set_xlabel("hours from appeal to decision")
    else:
        _empty(ax, "no decided appeals in the period" if report["appeals"]["available"]
               else "no appeals table (the analyst console is not installed)")
    out[PLOT_KINDS[2]] = _png(fig)

    fig, ax = _figure(PLOT_KINDS[3])
    labels, model, base = [], [], []
    for d in report["dossiers"]:
        for metric in ("pr_auc", "roc_auc", "recall_at_fpr"):
            v = d["metrics"]["test"][metric]
            labels.append(f"{d['registered_name']} v{d['version']}\n{metric}")
            model.append(v["model"] or 0)
            base.append(v["baseline"] or 0)
    if labels:
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], model, width=0.4, label="model")
        ax.bar([x + 0.2 for x in xs], base, width=0.4, label="rules baseline")
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no dossiers of versions in force")
    out[PLOT_KINDS[3]] = _png(fig)
    return out


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    columns = columns or sorted({k for r in rows for k in r})
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _counts(title: str, data: dict[str, dict[str, int]]) -> str:
    kinds = list(COUNT_KINDS)
    rows = [{title: k, **{x: v.get(x, 0) for x in kinds}} for k, v in data.items()]
    return _table(rows, [title, *kinds])


def _dossier(d: dict[str, Any]) -> str:
    targets = "".join(
        f"<tr><td>{escape(t['target'])}</td><td>{escape(_cell(t['value']))}</td>"
        f"<td class='{t['result']}'>{t['result']}</td></tr>" for t in d["targets"]
    )
    types = [{"fraud type": k, **v} for k, v in d["metrics"]["by_fraud_type"].items()]
    pops = [{"legitimate population": k, **v} for k, v in d["metrics"]["by_legitimate_population"].items()]
    overall = [{"metric": k, **v} for k, v in d["metrics"]["test"].items()]
    feats = "".join(f"<li><code>{escape(k)}</code>: {escape(v)}</li>" for k, v in d["features"].items())
    return (
        f"<h3>{escape(d['registered_name'])} version {d['version']}</h3><p>{escape(d['intended_use'])}</p>"
        f"<h4>Targets</h4><table><tr><th>target</th><th>value</th><th>result</th></tr>{targets}</table>"
        f"<h4>Test split beside the rules baseline</h4>{_table(overall)}{_table(types)}{_table(pops)}"
        f"<h4>Data</h4>{_table([d['data']])}<h4>Settings in force</h4>{_table([d['settings_in_force']])}"
        f"<h4>Known limitations</h4><ul>{''.join(f'<li>{escape(x)}</li>' for x in d['known_limitations'])}</ul>"
        f"<h4>Champion history</h4>{_table(d['champion_history'])}"
        f"<details><summary>Features ({len(d['features'])})</summary><ul>{feats}</ul></details>"
    )


def render(report: dict[str, Any], *, curves: dict[str, dict[str, str]]) -> str:
    images = plots(report)
    v = report["audit_log"]["verify"]
    status = (f"<div class='ok'>verify: OK, {v['records']} records</div>" if v["ok"]
              else f"<div class='broken'>verify: BROKEN: {escape(v['problem'] or '')}</div>")
    appeals = report["appeals"]
    history_rows = [dict(h) for items in report["number_history"].values() for h in items]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>SIMGuard regulator report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>SIMGuard regulator report {escape(report['period']['from'])} to {escape(report['period']['to'])}</h1>",
        f"<p>Generated {escape(report['generated_at'])}. Numbers are keyed pseudonyms (key id "
        f"<code>{escape(report['pseudonym_key_id'])}</code>): the same number has the same pseudonym throughout.</p>",
        "<h2>Audit log</h2>",
        f"<p>Head record #{report['audit_log']['head_seq']}: <code>{escape(report['audit_log']['head_hash'])}</code>. "
        f"Retention {report['audit_log']['retention_days']} days.</p>{status}",
        "<h2>Plots</h2>",
        *(f"<figure><img alt='{escape(k)}' src='data:image/png;base64,{b}'>"
          f"<figcaption>{escape(k)}</figcaption></figure>" for k, b in images.items()),
        "<h2>Per day</h2>", _counts("day", report["per_day"]),
        "<h2>Per operator</h2>", _counts("operator", report["per_operator"]),
        "<h2>Per fraud type</h2>", _counts("fraud type", report["per_fraud_type"]),
        "<h2>Per model version</h2>", _counts("model version", report["per_model_version"]),
        "<h2>Overturn rate per model version</h2>",
        _table([{"model version": k, **r} for k, r in report["overturn_rate_per_version"].items()],
               ["model version", "decisions", "overturned", "overturn_rate"]),
        "<h2>Appeals</h2>", f"<p>{escape(appeals['note'])}</p>",
        _table([{k: appeals[k] for k in ("received", "decided", "past_due", "median_hours_to_decision",
                                          "p95_hours_to_decision")}]),
        "<h2>Spoofed calls per ingress trunk</h2>", _table(report["spoofed_calls_per_trunk"]),
        "<h2>Decisions in the period</h2>",
        _table(report["decisions"], ["at", "number", "action", "scope", "fraud_type", "decided_by", "actor",
                                     "model_version", "operator", "note"]),
        "<h2>History per pseudonymised number</h2>",
        _table(history_rows, ["number", "at", "action", "fraud_type", "model_version", "actor", "note"]),
        "<h2>Champion history</h2>", _table(report["champion_history"]),
        "<h2>PR and ROC curves of the versions in force (test split)</h2>",
        *(f"<figure><img alt='{escape(t)} {escape(v)}' src='data:image/png;base64,{b}'>"
          f"<figcaption>{escape(v)}: {escape(t)}</figcaption></figure>"
          for v, found in curves.items() for t, b in found.items()),
        *(f"<p>No PR or ROC plot found in MLflow for {escape(v)}.</p>"
          for v in (f"{d['registered_name']} v{d['version']}" for d in report["dossiers"]) if v not in curves),
        "<h2>Dossiers of the versions in force</h2>",
        *(_dossier(d) for d in report["dossiers"]),
        *(f"<p>No dossier stored for {escape(x)}.</p>" for x in report["versions_without_dossier"]),
        "</body></html>",
    ]
    return "\n".join(parts)
