"""``simguard users add`` and ``simguard console --help`` through the real command group, and the
store rules the console relies on (a watched review keeps collecting detections). No Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest
from console_data import NOW, sim_decision
from typer.testing import CliRunner

from console.accounts import authenticate
from console.actions import ConsoleStore
from pipeline.cli import app, main
from streaming.blocklist.db import make_engine


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"home: {tmp_path / 'home'}\n")
    return path


def test_users_add_reads_the_password_file_and_hashes_it(config: Path, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    result = CliRunner().invoke(
        app, ["--config", str(config), "users", "add", "lan", "--role", "analyst", "--password-file", str(secret)]
    )
    assert result.exit_code == 0, result.output
    assert "user lan (analyst) saved" in result.output
    engine = make_engine(f"sqlite:///{tmp_path / 'home' / 'simguard.db'}")
    try:
        assert authenticate(engine, "lan", "a long enough password").status == "ok"
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("select password_hash from users").scalar_one()
        assert stored.startswith("$argon2") and "a long enough password" not in stored
    finally:
        engine.dispose()


def test_users_add_refuses_a_bad_role_or_short_password_in_one_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("short\n")
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config), "users", "add", "lan", "--role", "analyst", "--password-file", str(secret)])
    assert exc.value.code != 0
    assert capsys.readouterr().err.strip() == "error: the password must have at least 10 characters"
    with pytest.raises(SystemExit):
        main(["--config", str(config), "users", "add", "lan", "--role", "root", "--password-file", str(secret)])


def test_users_add_without_a_password_file_prompts(config: Path) -> None:
    result = CliRunner().invoke(
        app, ["--config", str(config), "users", "add", "sup", "--role", "supervisor"], input="pw one two three\n" * 2
    )
    assert result.exit_code == 0, result.output
    assert "Password" in result.output and "user sup (supervisor) saved" in result.output


def test_console_refuses_a_public_bind_without_secure_cookies(config: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--config", str(config), "console", "--host", "0.0.0.0"])
    assert "session cookies in clear" in capsys.readouterr().err


def test_a_watched_review_collects_later_detections(db_url: str) -> None:
    store = ConsoleStore.open(db_url)
    try:
        store.apply_decisions([sim_decision("+84962000009", 0.8, action="review", batch="a")], now=NOW)
        store.decide("+84962000009", "watch", comment="needs a day more", actor="lan", request_id="watch-0001")
        result = store.apply_decisions([sim_decision("+84962000009", 0.86, action="review", batch="b")], now=NOW)
        assert (result.reviews_opened, result.reviews_updated) == (0, 1)
        [review] = store.history("+84962000009").reviews
        assert (review.status, review.detections, review.score) == ("watch", 2, 0.86)
    finally:
        store.close()


def test_labels_export_writes_analysts_outcomes_with_the_feature_row(config: Path, tmp_path: Path) -> None:
    import pandas as pd

    store = ConsoleStore.open(f"sqlite:///{tmp_path / 'home' / 'simguard.db'}")
    try:
        store.apply_decisions(
            [sim_decision("+84961000001", 0.99, batch="a"), sim_decision("+84962000001", 0.8, action="review")],
            now=NOW,
        )
        store.decide("+84961000001", "overturn", comment="a family phone", actor="lan", request_id="lab-0001")
        store.decide("+84962000001", "confirm", comment="robocaller", actor="lan", request_id="lab-0002")
    finally:
        store.close()
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(app, ["--config", str(config), "labels", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 labels written" in result.output
    frame = pd.read_parquet(out).set_index("number")
    assert frame.loc["+84961000001", "label"] == "normal"
    assert frame.loc["+84962000001", "label"] == "spam_robocall"
    assert frame.loc["+84962000001", "f_distinct_callees_24h"] == 198.0
    assert str(frame["window_end"].dtype).startswith("datetime64")


def test_the_console_never_loads_spark_or_the_stream_job() -> None:
    import subprocess
    import sys

    code = (
        "import sys, console.app, console.actions, console.views, console.labels, pipeline.cli.console; "
        "sys.exit(any(m in sys.modules for m in ('pyspark', 'streaming.job', 'streaming.policy')))"
    )
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
