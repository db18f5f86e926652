"""Imports run one way inside the packages too: the blocklist store never reaches the stream's
policy module, and reason codes never import the scorer that uses them (no import circle)."""

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
