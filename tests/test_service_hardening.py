"""The blocklist HTTP API under abuse: authentication before the body, bounded bodies, validated
numbers and scopes, exact request ids, no 500 for odd input, docs behind the token, HEAD (on
SQLite and on the session's PostgreSQL server), the start-up checks of ``simguard serve``
(placeholder tokens, TLS off loopback, port range), and ``serve`` speaking HTTPS for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from browser_helpers import serving
from test_service import ANALYST, TOKENS, auth, block, settings

from features.errors import ConfigError
from streaming.blocklist.models import AllowlistEntry
from streaming.blocklist.service import check_serving, create_app
from streaming.blocklist.settings import BlocklistSettings, OperatorSettings, ServiceSettings
from streaming.blocklist.store import BlocklistStore


@pytest.fixture
def api(db_url: str) -> Iterator[tuple[httpx.Client, BlocklistStore]]:
    store = BlocklistStore.open(db_url)
    app = create_app(store=store, blocklist=settings(), service=ServiceSettings(max_page=100))
    with serving(app) as base, httpx.Client(base_url=base) as client:
        yield client, store
    store.close()


def unblock(client: httpx.Client, **body: object) -> httpx.Response:
    return client.post("/unblock", json={"reason": "appeal", "request_id": "r1", **body}, headers=auth(ANALYST))


def test_body_is_not_read_before_the_token_and_is_capped(api) -> None:
    client, _ = api
    big = b'{"number": "' + b"1" * (2 * 1024 * 1024) + b'"}'
    # no token: refused before the body is read or parsed
    res = client.post("/unblock", content=big, headers={"Content-Type": "application/json"})
    assert res.status_code == 401
    # a valid token and a body over 64 KiB: a clear 413, announced length or chunked
    res = client.post("/unblock", content=big, headers={**auth(ANALYST), "Content-Type": "application/json"})
    assert res.status_code == 413 and "65536" in res.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 4096

    res = client.post("/unblock", content=chunks(), headers={**auth(ANALYST), "Content-Type": "application/json"})
    assert res.status_code == 413


@pytest.mark.parametrize(
    "number", ["+8496\x001000001", "+84961000001\r\nX-Evil: 1", "../..", "=cmd|' /C calc'!A0", "84 961", "+84 9610 abc"]
)
def test_unblock_rejects_what_is_not_a_number(api, number: str) -> None:
    client, store = api
    res = unblock(client, number=number)
    assert res.status_code == 422
    [err] = res.json()["detail"]
    assert err["loc"] == ["body", "number"]
    with store.engine.connect() as conn:  # nothing reached the allowlist (PostgreSQL takes no NUL to look it up)
        assert conn.scalar(sa.select(sa.func.count()).select_from(AllowlistEntry)) == 0


def test_unblock_normalises_spacing_and_says_what_was_lifted(api) -> None:
    client, store = api
    block(store, ["+84989051734"], batch="s:1")
    res = unblock(client, number="+84 989 051 734")
    assert res.status_code == 200
    out = res.json()
    assert out["number"] == "+84989051734" and out["cleared"] is True
    assert out["lifted"] == [{"scope": "all", "version": 2, "lifts_version": 1}]
    assert not store.is_blocked("+84989051734")


def test_unblock_of_a_number_not_blocked_does_not_claim_it_cleared(api) -> None:
    client, _ = api
    out = unblock(client, number="+84961000009").json()
    assert out["cleared"] is False and out["lifted"] == [] and out["entries"] == []
    # it is still put on the analyst's allowlist, and the answer says so
    assert out["allowlisted"] is True


def test_unknown_scope_is_422(api) -> None:
    client, _ = api
    res = unblock(client, number="+84961000001", scope="everything")
    assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "scope"]
    assert unblock(client, number="+84961000001", scope="trunk:international_gateway").status_code == 200


def test_request_ids_are_compared_exactly(api) -> None:
    client, store = api
    block(store, ["+84961000001", "+84961000002"], batch="s:1")
    assert unblock(client, number="+84961000001", request_id="case:7").status_code == 200
    # "case" is a prefix of "case:7" but another request
    res = unblock(client, number="+84961000002", request_id="case")
    assert res.status_code == 200 and res.json()["replayed"] is False
    assert not store.is_blocked("+84961000002")
    # the same id for another number is still a clash
    assert unblock(client, number="+84961000003", request_id="case:7").status_code == 409


def test_odd_input_is_422_not_500(api) -> None:
    client, _ = api
    res = client.get("/blocklist", params={"since": "9223372036854775808"}, headers=auth(TOKENS["viettel"]))
    assert res.status_code == 422
    body = b'{"number": "+84961000001", "reason": "\\ud800", "request_id": "r1"}'
    res = client.post("/unblock", content=body, headers={**auth(ANALYST), "Content-Type": "application/json"})
    assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "reason"]
    res = client.post("/unblock", content=b"{not json", headers={**auth(ANALYST), "Content-Type": "application/json"})
    assert res.status_code == 422


def test_docs_need_a_token_and_head_answers(api) -> None:
    client, _ = api
    for path in ("/docs", "/redoc", "/openapi.json", "/nothing-here"):
        assert client.get(path).status_code == 401, path
    assert client.get("/openapi.json", headers=auth(ANALYST)).json()["paths"]["/unblock"]
    # the HTML pages are off: they could not send the token for the spec
    assert client.get("/docs", headers=auth(TOKENS["viettel"])).status_code == 404
    res = client.head("/blocklist", headers=auth(TOKENS["viettel"]))
    assert res.status_code == 200 and res.content == b""
    assert client.head("/healthz").status_code == 200
    assert client.head("/blocklist").status_code == 401


def test_serve_refuses_placeholder_tokens() -> None:
    bl = BlocklistSettings(operators={"viettel": OperatorSettings(api_token="change-me-viettel-api")})
    with pytest.raises(ConfigError, match=r"blocklist\.operators\.viettel\.api_token.*placeholder"):
        check_serving(host="127.0.0.1", service=ServiceSettings(), blocklist=bl)
    bl = BlocklistSettings(analysts={"ops_lead": "CHANGE-ME"})
    with pytest.raises(ConfigError, match=r"blocklist\.analysts\.ops_lead"):
        check_serving(host="127.0.0.1", service=ServiceSettings(), blocklist=bl)
    check_serving(host="127.0.0.1", service=ServiceSettings(), blocklist=settings())


def test_serve_needs_tls_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0.*tls_certfile"):
        check_serving(host="0.0.0.0", service=ServiceSettings(), blocklist=settings())
    for host in ("127.0.0.1", "localhost", "::1"):
        check_serving(host=host, service=ServiceSettings(), blocklist=settings())
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    tls = ServiceSettings(tls_certfile=cert, tls_keyfile=key)
    check_serving(host="0.0.0.0", service=tls, blocklist=settings())
    with pytest.raises(ValueError, match="tls_keyfile"):
        ServiceSettings(tls_certfile=cert)
    with pytest.raises(ConfigError, match="no such file"):
        check_serving(
            host="0.0.0.0",
            service=ServiceSettings(tls_certfile=cert, tls_keyfile=tmp_path / "nope.pem"),
            blocklist=settings(),
        )


def serve_cli(tmp_path: Path, config_text: str, *args: str) -> tuple[int, str]:
    """``simguard serve`` through the real entry point (errors are one line on stderr)."""
    import subprocess
    import sys

    config = tmp_path / "config.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\n{config_text}")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--config", str(config), "serve", "--no-distribute", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stderr


def test_serve_cli_errors_are_one_line(tmp_path: Path) -> None:
    code, err = serve_cli(tmp_path, "", "--port", "70000")
    assert code == 2 and err.strip() == "error: --port 70000: a TCP port is 1 to 65535"
    code, err = serve_cli(tmp_path, "blocklist:\n  analysts:\n    ops_lead: change-me-analyst\n")
    assert code == 2 and err.strip().count("\n") == 0 and "blocklist.analysts.ops_lead" in err
    assert "change-me-analyst" not in err
    code, err = serve_cli(tmp_path, "service:\n  host: 0.0.0.0\n")
    assert code == 2 and err.strip().count("\n") == 0 and "tls_certfile" in err


def test_serve_hands_the_tls_files_to_uvicorn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from pipeline.cli import app

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"home: {tmp_path / 'home'}\nservice:\n  host: 0.0.0.0\n  tls_certfile: {cert}\n  tls_keyfile: {key}\n"
    )
    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    result = CliRunner().invoke(app, ["--config", str(config), "serve", "--no-distribute"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "https://0.0.0.0:8080" in result.output
    assert seen["ssl_certfile"] == str(cert) and seen["ssl_keyfile"] == str(key) and seen["host"] == "0.0.0.0"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_serve_speaks_https_with_the_configured_certificate(tmp_path: Path) -> None:
    """The README's TLS set-up, run: ``simguard serve`` with ``service.tls_certfile`` and
    ``tls_keyfile`` answers over HTTPS with that certificate, and not over plain HTTP."""
    import os
    import signal
    import ssl
    import subprocess
    import sys
    import time

    from pipeline.broker import free_port

    cert, key = self_signed(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"home: {tmp_path / 'home'}\nservice:\n  tls_certfile: {cert}\n  tls_keyfile: {key}\n"
        f"blocklist:\n  operators:\n    viettel:\n      api_token: {TOKENS['viettel']}\n"
    )
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "--config", str(config), "serve", "--no-distribute",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while "Uvicorn running" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Uvicorn running on https://127.0.0.1" in log.read_text(), log.read_text()
        assert f"blocklist API on https://127.0.0.1:{port}" in log.read_text()
        res = httpx.get(f"https://127.0.0.1:{port}/blocklist?since=0", verify=trusted, headers=auth(TOKENS["viettel"]))
        assert res.status_code == 200 and res.json()["entries"] == []
        # the certificate is the one configured: a client trusting only the system CAs refuses it
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/healthz")
        # and plain HTTP gets no answer from the TLS port
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
