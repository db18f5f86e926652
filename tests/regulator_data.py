"""What a regulator audits, on top of the console's sample flags (``console_data.populate``):
analysts' decisions and an appeal made through the console, and a registered version's dossier
that misses its FPR target."""

from __future__ import annotations

from console_data import populate

from models.dossier import build_dossier
from streaming.blocklist.dossiers import record_champion_move, store_dossier

#: what an evaluation of version 7 reported (the issue's demo figure: 0.128% FPR, target 0.1%)
REPORT = {
    "target_fpr": 0.001,
    "test": {"fpr": 0.00128, "recall_at_fpr": 0.91, "precision": 0.78, "pr_auc": 0.88, "roc_auc": 0.995,
             "recall_by_type": {"spam_robocall": 0.95, "simbox": 0.9, "wangiri": 0.85},
             "fpr_by_population": {"call_centre": 0.004, "ordinary": 0.0009}, "n_positive": 120, "n_negative": 9000},
    "baseline": {"test": {"fpr": 0.001, "recall_at_fpr": 0.6, "precision": 0.5, "pr_auc": 0.55, "roc_auc": 0.9,
                          "recall_by_type": {"spam_robocall": 0.7, "simbox": 0.5, "wangiri": 0.6},
                          "fpr_by_population": {"call_centre": 0.01, "ordinary": 0.0008}}},
    "comparison": {"recall_gain_at_baseline_fpr": 0.31},
}


def regulated(store) -> dict[str, list[str]]:
    """The console's sample flags, then: an overturn (its comment names the number), a
    confirmation, an escalation, an appeal filed by an operator and overturned by a supervisor,
    and version 7's dossier with its champion move. Returns the numbers (as ``populate``)."""
    numbers = populate(store)
    blocks, reviews = numbers["blocks"], numbers["reviews"]
    store.decide(blocks[0], "overturn", comment=f"called {blocks[0]} back: a family phone", actor="lan",
                 request_id="reg-1")
    store.decide(reviews[0], "confirm", comment="robocalls confirmed by the operator", actor="lan",
                 request_id="reg-2")
    store.decide(reviews[1], "escalate", comment="needs a supervisor", actor="lan", request_id="reg-3")
    appeal, _ = store.file_appeal(blocks[1], operator="viettel", request_id="care-1",
                                  reason=f"my shop's line {blocks[1]}", filed_by="operator:viettel")
    store.decide_appeal(appeal.id, "overturn", comment="a registered shop", actor="mai", request_id="reg-4")
    record_champion_move(store.engine, registered_name="simguard-spam-sim", alias="champion", version=7,
                         previous=None, actor="ci (simguard train)")
    dossier = build_dossier(
        registered_name="simguard-spam-sim", version=7, task="spam-sim", report=REPORT,
        data={"source": "simulated (simguard simulate)", "units": 4000, "rows_per_split": {"test": 9120}},
        features={"calls_out_24h": "calls made in the last 24 h"}, threshold=0.9,
        policy={"spam_robocall": {"block_above": 0.9}}, allowlist_sources=["numbering plan"],
    )
    store_dossier(store.engine, dossier, "# simguard-spam-sim v7", actor="ci (simguard train)")
    return numbers
