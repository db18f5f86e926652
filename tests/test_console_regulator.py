"""The regulator's console pages through FastAPI's TestClient, on SQLite and PostgreSQL: roles
both ways, the report's content from the log (console decisions and appeals included), numbers
only as pseudonyms and the same pseudonym on every page, drill-down by pseudonym."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from regulator_data import regulated

from console.accounts import add_user
from console.actions import ConsoleStore
from console.app import create_app
from console.settings import ConsoleSettings
from streaming.blocklist import audit
from streaming.blocklist.pseudonym import Pseudonymizer
from streaming.blocklist.settings import AuditSettings

PASSWORD = "correct horse battery"
KEY = "regulator-pages-test-key"
AUDIT = AuditSettings(pseudonym_key=SecretStr(KEY), pseudonym_key_id="k9")
PERIOD = "from=2026-11-01&to=2099-12-31"
E164 = re.compile(r"\+\d{8,15}")


@pytest.fixture
def store(db_url: str):
    s = ConsoleStore.open(db_url).configure(policy=ConsoleStore.policy, clearance_hours=72, appeal_due_hours=24)
    s.numbers = regulated(s)  # type: ignore[attr-defined]
    for name, role in (("ana", "analyst"), ("sup", "supervisor"), ("reg", "regulator")):
        add_user(s.engine, name, role, PASSWORD)
    yield s
    s.close()


def app_for(store: ConsoleStore, audit_settings: AuditSettings | None = AUDIT):
    return create_app(store, ConsoleSettings(), secret_key="k" * 48, operator_tokens={}, audit=audit_settings)


def login(app, name: str) -> TestClient:
    client = TestClient(app, base_url="http://127.0.0.1")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def numbers_of(store: ConsoleStore) -> list[str]:
    return [n for ns in store.numbers.values() for n in ns]  # type: ignore[attr-defined]


def test_regulators_and_analysts_each_get_403_on_the_others_pages(store: ConsoleStore) -> None:
    app = app_for(store)
    name = Pseudonymizer(AUDIT.pseudonym_key, "k9")(store.numbers["blocks"][0])  # type: ignore[attr-defined]
    regulator_pages = ["/regulator", f"/regulator/decisions?{PERIOD}", f"/regulator/numbers/{name}",
                       "/regulator/dossiers/simguard-spam-sim/7", f"/regulator/numbers?pseudonym={name}"]
    anonymous = TestClient(app)
    for path in regulator_pages:
        r = anonymous.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    for analyst in ("ana", "sup"):
        client = login(app, analyst)
        for path in regulator_pages:
            assert client.get(path, follow_redirects=False).status_code == 403, (analyst, path)
    reg = login(app, "reg")
    number = store.numbers["reviews"][2]  # type: ignore[attr-defined]
    for path in ("/queue", "/queue?kind=blocks", f"/flags/{number}", "/work", "/appeals/new", "/appeals/1",
                 "/manual-block", "/api/queue", "/admin/users"):
        assert reg.get(path).status_code == 403, path
    token = re.search(r'name="csrf" value="([^"]+)"', reg.get("/regulator").text).group(1)  # type: ignore[union-attr]
    r = reg.post(f"/flags/{number}/decide", data={"action": "overturn", "comment": "x", "request_id": "reg-post-1",
                                                  "csrf": token})
    assert r.status_code == 403 and number in {rv.number for rv in store.open_reviews()}
    for path in regulator_pages[:4]:
        assert reg.get(path).status_code == 200, path


def test_the_pages_show_the_log_with_pseudonyms_only(store: ConsoleStore) -> None:
    reg = login(app_for(store), "reg")
    pseudonym = Pseudonymizer(AUDIT.pseudonym_key, "k9")
    blocks = store.numbers["blocks"]  # type: ignore[attr-defined]
    overview = reg.get(f"/regulator?{PERIOD}").text
    seq, head = audit.head(store.engine)
    assert f"Head record #{seq}" in overview and head in overview and "verify: OK" in overview
    # console decisions and the appeal are counted from the log; the escalation is not an overturn
    totals = re.search(r"<tr><td>viettel</td>((?:<td>\d+</td>)+)</tr>", overview.replace("\n", ""))
    assert totals, overview
    columns = re.findall(r"<th>([a-z ]+)</th>", overview.split("Per operator")[1].split("</tr>")[0])
    viettel = dict(zip(columns[1:], map(int, re.findall(r"\d+", totals.group(1))), strict=True))
    assert viettel["blocks"] == 3 + 1  # three model blocks, one confirmed review
    assert viettel["block overturns"] == 2 and viettel["confirmations"] == 1 and viettel["review overturns"] == 0
    assert viettel["appeals"] == 1 and viettel["appeals decided"] == 1
    assert '<span class="pill fail">test FPR &lt;= 0.100%: fail</span>' in overview
    # the decisions page names the overturned block by its pseudonym, linked to its history
    decisions = reg.get(f"/regulator/decisions?{PERIOD}").text
    name = pseudonym(blocks[0])
    link = f'<a class="pseudonym" href="/regulator/numbers/{name}">{name}</a>'
    assert link in decisions and decisions.count(name) >= 4  # two blocks and an unblock, each linked
    history = reg.get(f"/regulator/numbers/{name}").text
    assert f"History of <span class=\"pseudonym\">{name}</span>" in history
    assert re.search(r"<td>unblock</td>.*<td>analyst</td><td>lan</td><td class=\"text\">called " + name, history,
                     re.S)
    appealed = reg.get(f"/regulator/numbers/{pseudonym(blocks[1])}").text
    assert "appeal filed" in appealed and "appeal overturned" in appealed and "operator:viettel" in appealed
    dossier = reg.get("/regulator/dossiers/simguard-spam-sim/7").text
    assert "<td>test FPR &lt;= 0.100%</td><td>0.00128</td><td class=\"fail\">fail</td>" in dossier
    # no page carries a number, not even inside a comment or an appeal's reason
    pages = [overview, decisions, history, appealed, dossier]
    for number in numbers_of(store):
        assert all(number.lstrip("+") not in page for page in pages), number
    assert not any(E164.search(page) for page in pages)


def test_a_number_is_found_by_its_pseudonym_only(store: ConsoleStore) -> None:
    reg = login(app_for(store), "reg")
    number = store.numbers["blocks"][0]  # type: ignore[attr-defined]
    raw = reg.get(f"/regulator/numbers/{number}")
    assert raw.status_code == 404 and number not in raw.text
    assert reg.get("/regulator/numbers/k9-0123456789abcdef").status_code == 404
    other_key = Pseudonymizer(SecretStr("another key"), "k9")(number)
    assert reg.get(f"/regulator/numbers/{other_key}").status_code == 404
    found = reg.get(f"/regulator/numbers?pseudonym={Pseudonymizer(AUDIT.pseudonym_key, 'k9')(number)}")
    assert found.status_code == 200 and "<td>unblock</td>" in found.text


def test_without_a_key_only_the_counts_are_shown(store: ConsoleStore) -> None:
    reg = login(app_for(store, None), "reg")
    overview = reg.get(f"/regulator?{PERIOD}")
    assert overview.status_code == 200 and "no pseudonym key" in overview.text and "verify: OK" in overview.text
    assert not E164.search(overview.text)
    assert reg.get(f"/regulator/decisions?{PERIOD}").status_code == 503
    name = Pseudonymizer(AUDIT.pseudonym_key, "k9")(store.numbers["blocks"][0])  # type: ignore[attr-defined]
    assert reg.get(f"/regulator/numbers/{name}").status_code == 503


def test_console_actions_keep_the_log_whole_and_the_tables_reconstructible(store: ConsoleStore) -> None:
    login(app_for(store), "reg")  # a sign-in is logged too
    kinds = [r.kind for r in audit.records(store.engine)]
    for kind in ("console_decision", "appeal_filed", "appeal_decided", "model_registered", "champion_alias",
                 "console_login"):
        assert kind in kinds, kind
    assert audit.verify(store.engine).ok
    assert audit.disagreements(store.engine) == []
