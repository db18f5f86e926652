"""Imports run one way inside the packages too: the blocklist store and the analyst console never
reach the stream's modules (policy, job, state, Spark), and reason codes never import the scorer
that uses them (no import circle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions and TYPE_CHECKING blocks."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("streaming.blocklist.store", "streaming.policy"),
        ("streaming.blocklist.service", "streaming.policy"),
        ("streaming.blocklist.export", "streaming.policy"),
        ("models.reasons", "models.scoring"),
    ],
)
def test_module_does_not_load(module: str, forbidden: str) -> None:
    code = f"import sys, {module}; sys.exit({forbidden!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_no_circle_between_reasons_and_scoring() -> None:
    assert "models.scoring" not in imported_modules(ROOT / "models" / "reasons.py")
    assert "models.reasons" in imported_modules(ROOT / "models" / "scoring.py")


def test_the_blocklist_package_leaves_the_policy_to_the_sink() -> None:
    users = sorted(
        p.name for p in (ROOT / "streaming" / "blocklist").glob("*.py") if "streaming.policy" in imported_modules(p)
    )
    assert users == ["sink.py"]


@pytest.mark.parametrize(
    "module", ["streaming.blocklist.store", "streaming.blocklist.service", "console.app", "console.labels"]
)
def test_the_store_and_the_console_load_nothing_of_the_stream(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.startswith(('streaming.', 'pyspark', 'delta')) "
        "and m.split('.')[:2] != ['streaming', 'blocklist']))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
