"""The analyst console through FastAPI's TestClient, on SQLite and PostgreSQL (``db_url``):
sign-in, roles, CSRF, lock-out, escaping, the queue, a flag's page, decisions and appeals."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from console_data import NOW, populate, sim_decision
from fastapi.testclient import TestClient

from console.accounts import add_user, authenticate
from console.actions import ConsoleStore
from console.app import create_app
from console.settings import ConsoleSettings
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.models import AllowlistEntry, Appeal, ConsoleAction, Review

PASSWORD = "correct horse battery"
OPERATOR_TOKEN = "op-token-viettel-0123456789"


@pytest.fixture
def store(db_url: str):
    s = ConsoleStore.open(db_url).configure(policy=ConsoleStore.policy, clearance_hours=72, appeal_due_hours=24)
    numbers = populate(s)
    s.numbers = numbers  # type: ignore[attr-defined]
    for name, role in (("ana", "analyst"), ("sup", "supervisor"), ("adm", "admin"), ("reg", "regulator")):
        add_user(s.engine, name, role, PASSWORD)
    yield s
    s.close()


@pytest.fixture
def app(store: ConsoleStore):
    return create_app(store, ConsoleSettings(), secret_key="k" * 48, operator_tokens={"viettel": OPERATOR_TOKEN})


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def login(app, name: str, password: str = PASSWORD) -> TestClient:
    client = TestClient(app, base_url="http://127.0.0.1")
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": name, "password": password, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def form(client: TestClient, page: str, url: str, **fields):
    """Post ``fields`` to ``url`` with the CSRF token of ``page`` (as the browser would)."""
    html = client.get(page).text
    fields.setdefault("csrf", csrf_of(html))
    fields.setdefault("request_id", f"req-{dt.datetime.now().timestamp()}")
    return client.post(url, data=fields, follow_redirects=False)


# -- access ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/queue", "/flags/+84961000001", "/work", "/admin/users", "/appeals/1"])
def test_pages_without_a_session_redirect_to_login(app, path: str) -> None:
    r = TestClient(app).get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_the_api_without_a_session_or_token_is_401(app) -> None:
    client = TestClient(app)
    assert client.get("/api/queue").status_code == 401
    assert (
        client.post("/api/appeals", json={"number": "+84961000001", "reason": "x", "request_id": "a"}).status_code
        == 401
    )
    bad = {"authorization": "Bearer nope"}
    assert client.get("/api/appeals/1", headers=bad).status_code == 401


def test_roles_are_checked_on_every_route(app) -> None:
    ana = login(app, "ana")
    assert ana.get("/admin/users").status_code == 403
    assert ana.get("/work?everyone=1").status_code == 403
    assert ana.get("/regulator").status_code == 403
    r = form(ana, "/flags/+84961000001", "/flags/+84961000001/allowlist", comment="trusted")
    assert r.status_code == 403
    reg = login(app, "reg")
    for path in ("/queue", "/flags/+84961000001", "/api/queue", "/appeals/new"):
        assert reg.get(path).status_code == 403, path
    assert reg.get("/regulator").status_code == 200
    adm = login(app, "adm")
    assert adm.get("/queue").status_code == 403 and adm.get("/admin/users").status_code == 200
    assert login(app, "sup").get("/work?everyone=1").status_code == 200


def test_a_post_without_the_csrf_token_is_rejected(app, store: ConsoleStore) -> None:
    ana = login(app, "ana")
    number = store.numbers["blocks"][0]  # type: ignore[attr-defined]
    data = {"action": "overturn", "comment": "ordinary subscriber", "request_id": "req-no-csrf-1"}
    assert ana.post(f"/flags/{number}/decide", data=data).status_code == 403
    assert ana.post(f"/flags/{number}/decide", data={**data, "csrf": "forged"}).status_code == 403
    assert store.is_blocked(number, now=NOW)
    # the login form needs it too
    assert TestClient(app).post("/login", data={"name": "ana", "password": PASSWORD}).status_code == 403


def test_five_wrong_passwords_lock_the_account(app, store: ConsoleStore) -> None:
    client = TestClient(app)
    token = csrf_of(client.get("/login").text)
    for _ in range(4):
        r = client.post("/login", data={"name": "ana", "password": "wrong password", "csrf": token})
        assert r.status_code == 401 and "Wrong name or password" in r.text
    r = client.post("/login", data={"name": "ana", "password": "wrong password", "csrf": token})
    assert r.status_code == 401 and "locked" in r.text
    r = client.post("/login", data={"name": "ana", "password": PASSWORD, "csrf": token}, follow_redirects=False)
    assert r.status_code == 401 and "locked" in r.text
    # after the lock-out it opens again
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)
    assert authenticate(store.engine, "ana", PASSWORD, now=later).status == "ok"


def test_login_is_rate_limited_per_client(store: ConsoleStore) -> None:
    app = create_app(store, ConsoleSettings(login_attempts_per_minute=3), secret_key="k" * 48, operator_tokens={})
    client = TestClient(app)
    token = csrf_of(client.get("/login").text)
    codes = [
        client.post("/login", data={"name": f"u{i}x", "password": "p", "csrf": token}).status_code for i in range(4)
    ]
    assert codes == [401, 401, 401, 429]


def test_a_session_expires(store: ConsoleStore) -> None:
    app = create_app(store, ConsoleSettings(session_hours=1 / 3600), secret_key="k" * 48, operator_tokens={})
    client = login(app, "ana")
    import time

    time.sleep(2.2)
    r = client.get("/queue", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_users_add_refuses_weak_input(store: ConsoleStore) -> None:
    with pytest.raises(BlocklistError, match="at least 10"):
        add_user(store.engine, "bob", "analyst", "short")
    with pytest.raises(BlocklistError, match="unknown role"):
        add_user(store.engine, "bob", "root", PASSWORD)


# -- queue, flag, decisions -----------------------------------------------------------------------


def test_queue_lists_open_reviews_by_score_with_counts_and_filters(app, store: ConsoleStore) -> None:
    ana = login(app, "ana")
    html = ana.get("/queue").text
    reviews = store.numbers["reviews"]  # type: ignore[attr-defined]
    assert [m for m in re.findall(r'class="flag" href="/flags/[^"]+">([^<]+)<', html)] == reviews
    assert "open: 4" in html and "oldest open" in html
    by_age = ana.get("/queue?sort=age").text
    assert "+84962000001" in by_age
    html = ana.get("/queue?operator=mobifone").text
    assert re.findall(r'class="flag" href="/flags/[^"]+">([^<]+)<', html) == [reviews[1], reviews[3]]
    html = ana.get("/queue?model_version=7&fraud_type=spam_robocall").text
    assert re.findall(r'class="flag" href="/flags/[^"]+">([^<]+)<', html) == [reviews[0], reviews[2]]
    blocks = ana.get("/queue?kind=blocks").text
    assert len(re.findall(r'class="flag"', blocks)) == 3


def test_queue_paginates(store: ConsoleStore) -> None:
    app = create_app(store, ConsoleSettings(page_size=3), secret_key="k" * 48, operator_tokens={})
    ana = login(app, "ana")
    first, second = ana.get("/queue").text, ana.get("/queue?page=2").text
    assert "Page 1 of 2 (4 in all)" in first and len(re.findall(r'class="flag"', first)) == 3
    assert len(re.findall(r'class="flag"', second)) == 1


def test_flag_page_shows_one_line_per_decision_with_evidence_and_chart(app, store: ConsoleStore) -> None:
    number = store.numbers["blocks"][0]  # type: ignore[attr-defined]
    html = login(app, "ana").get(f"/flags/{number}").text
    # two overlapping windows, one decision line
    decisions = re.search(r'<table class="decisions">(.*?)</table>', html, re.S).group(1)  # type: ignore[union-attr]
    assert decisions.count("<td>blocked</td>") == 1 and "<td>2</td>" in decisions
    assert "above the block threshold 0.9" in html and "simguard-spam-sim v7" in html
    # each reason with its value and where it sits among the windows the version was validated on
    reasons = re.search(r'<ul class="reasons">(.*?)</ul>', html, re.S).group(1)  # type: ignore[union-attr]
    items = [" ".join(re.sub(r"<[^>]+>", "", li).split()) for li in re.findall(r"<li>(.*?)</li>", reasons, re.S)]
    assert items == [
        "called 198 distinct numbers in 24h (distinct_callees_24h = 198, p99)",
        "8% of calls answered (answered_share_24h = 0.08, p8)",
    ]
    assert "distinct_callees_24h" in html and "(<b>9.0 h</b> seen)" in html and "<b>24</b> calls kept" in html
    assert 'src="data:image/png;base64,' in html
    assert "356938035643809" in html and "452-04-1200" in html


def test_overturn_unblocks_through_the_store_with_an_expiring_clearance(app, store: ConsoleStore) -> None:
    number = store.numbers["blocks"][1]  # type: ignore[attr-defined]
    ana = login(app, "ana")
    before = store.head_version()
    r = form(
        ana, f"/flags/{number}", f"/flags/{number}/decide", action="overturn", comment="", request_id="req-empty-1"
    )
    assert r.status_code == 400 and "comment is required" in r.text
    r = form(
        ana,
        f"/flags/{number}",
        f"/flags/{number}/decide",
        action="overturn",
        comment="a shop owner",
        request_id="req-overturn-1",
    )
    assert r.status_code == 303
    assert not store.is_blocked(number)
    [unblock] = store.entries_since(before)
    assert (unblock.action, unblock.decided_by, unblock.actor, unblock.note) == (
        "unblock",
        "analyst",
        "ana",
        "a shop owner",
    )
    # the same form again writes nothing
    form(
        ana,
        f"/flags/{number}",
        f"/flags/{number}/decide",
        action="overturn",
        comment="a shop owner",
        request_id="req-overturn-1",
    )
    assert store.head_version() == before + 1
    with store._read() as s:
        row = s.get(AllowlistEntry, (number, "analyst_cleared"))
        assert row.expires_at is not None and row.added_by == "ana"
    # cleared now; after the clearance lapses the model may block it again
    again = sim_decision(number, 0.99, batch="later")
    assert store.apply_decisions([again]).allowed == 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=73)
    assert len(store.apply_decisions([sim_decision(number, 0.99, batch="later2")], now=later).entries) == 1
    html = ana.get(f"/flags/{number}").text
    assert "<td>overturn</td><td>ana</td>" in html


def test_confirm_escalate_watch_record_who_and_when(app, store: ConsoleStore) -> None:
    r1, r2, r3 = store.numbers["reviews"][:3]  # type: ignore[attr-defined]
    ana = login(app, "ana")
    before = store.head_version()
    form(ana, f"/flags/{r1}", f"/flags/{r1}/decide", action="confirm", comment="robocaller", request_id="req-confirm-1")
    form(ana, f"/flags/{r1}", f"/flags/{r1}/decide", action="confirm", comment="robocaller", request_id="req-confirm-1")
    assert store.is_blocked(r1) and store.head_version() == before + 1
    [block] = store.entries_since(before)
    assert block.decided_by == "analyst" and block.actor == "ana" and block.model_version == "7"
    form(ana, f"/flags/{r2}", f"/flags/{r2}/decide", action="escalate", comment="unsure", request_id="req-escalate-1")
    form(ana, f"/flags/{r3}", f"/flags/{r3}/decide", action="watch", comment="needs more", request_id="req-watch-1")
    with store._read() as s:
        status = dict(s.execute(sa.select(Review.number, Review.status)).all())
        acts = s.scalars(sa.select(ConsoleAction).order_by(ConsoleAction.id)).all()
    assert (status[r1], status[r2], status[r3]) == ("confirmed", "escalated", "watch")
    assert [(a.action, a.actor) for a in acts] == [("confirm", "ana"), ("escalate", "ana"), ("watch", "ana")]
    assert all(a.created_at is not None for a in acts)
    html = ana.get("/queue").text
    assert "open: 1" in html and "escalated: 1" in html and "watch: 1" in html
    work = ana.get("/work").text
    assert "confirm: 1" in work and "robocaller" in work


def test_a_note_with_html_is_shown_as_text(app, store: ConsoleStore) -> None:
    number = store.numbers["blocks"][2]  # type: ignore[attr-defined]
    ana = login(app, "ana")
    evil = '<script>alert("x")</script><b>bold</b>'
    form(ana, f"/flags/{number}", f"/flags/{number}/note", comment=evil, request_id="req-note-1")
    html = ana.get(f"/flags/{number}").text
    assert "<script>alert" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in html
    assert "script-src" not in html and "default-src 'self'" in ana.get("/queue").headers["content-security-policy"]


# -- appeals --------------------------------------------------------------------------------------


def test_operator_files_an_appeal_and_reads_its_outcome(app, store: ConsoleStore) -> None:
    number = store.numbers["blocks"][0]  # type: ignore[attr-defined]
    api = TestClient(app)
    auth = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
    body = {"number": number, "reason": "my mother's phone", "request_id": "care-77"}
    r = api.post("/api/appeals", json=body, headers=auth)
    assert r.status_code == 201
    appeal = r.json()
    due = dt.datetime.fromisoformat(appeal["due_at"]) - dt.datetime.fromisoformat(appeal["created_at"])
    assert appeal["status"] == "open" and due == dt.timedelta(hours=24)
    assert api.post("/api/appeals", json=body, headers=auth).json()["id"] == appeal["id"]  # retried: same appeal
    ana = login(app, "ana")
    assert f'href="/appeals/{appeal["id"]}"' in ana.get("/queue").text
    r = form(
        ana,
        f"/appeals/{appeal['id']}",
        f"/appeals/{appeal['id']}/decide",
        outcome="overturn",
        comment="confirmed with the subscriber",
        request_id="req-appeal-1",
    )
    assert r.status_code == 303
    out = api.get(f"/api/appeals/{appeal['id']}", headers=auth).json()
    assert out["status"] == "overturned" and out["outcome_comment"] == "confirmed with the subscriber"
    assert out["unblock_version"] == store.head_version() and not store.is_blocked(number)


def test_appeals_near_or_past_due_come_first(store: ConsoleStore) -> None:
    store.file_appeal("+84961000002", operator="viettel", request_id="a1", reason="later", filed_by="x", now=NOW)
    store.file_appeal(
        "+84961000003",
        operator="viettel",
        request_id="a2",
        reason="sooner",
        filed_by="x",
        now=NOW - dt.timedelta(hours=30),
    )
    from console import views

    appeals = views.queue(store.engine, views.QueueFilters(), size=10, now=NOW)["appeals"]
    assert [a.number for a in appeals] == ["+84961000003", "+84961000002"]
    app = create_app(store, ConsoleSettings(), secret_key="k" * 48, operator_tokens={})
    html = login(app, "ana").get("/queue").text
    assert 'class="overdue"' in html
    with store._read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Appeal)) == 2


def test_a_reported_number_is_blocked_by_hand_with_the_report(app, store: ConsoleStore) -> None:
    ana = login(app, "ana")
    before = store.head_version()
    report = "Police report 2026/118: callers posing as a bank"
    r = form(ana, "/manual-block", "/manual-block", number="+84968000042", fraud_type="spam_robocall",
             evidence=report, request_id="req-manual-1")  # fmt: skip
    assert r.status_code == 303
    form(ana, "/manual-block", "/manual-block", number="+84968000042", fraud_type="spam_robocall",
         evidence=report, request_id="req-manual-1")  # fmt: skip
    [entry] = store.entries_since(before)
    assert (entry.action, entry.decided_by, entry.actor, entry.note) == ("block", "analyst", "ana", report)
    assert store.is_blocked("+84968000042")
    assert report in ana.get("/flags/+84968000042").text
    r = form(ana, "/manual-block", "/manual-block", number="112", fraud_type="spam_robocall", evidence="x",
             request_id="req-manual-2")  # fmt: skip
    assert r.status_code == 400 and "never blocked" in r.text


def test_related_numbers_are_listed_and_decided_together(app, store: ConsoleStore) -> None:
    blocked = store.numbers["blocks"][0]  # type: ignore[attr-defined]
    r1, r2 = store.numbers["reviews"][:2]  # type: ignore[attr-defined]
    ana = login(app, "ana")
    html = ana.get(f"/flags/{blocked}").text
    rows = re.findall(r'name="numbers" value="([^"]+)"', html)
    assert r1 in rows and r2 in rows and blocked not in rows
    assert "same IMEI, same cell" in html
    html_page = ana.get(f"/flags/{blocked}").text
    r = ana.post(
        f"/flags/{blocked}/group",
        data={"csrf": csrf_of(html_page), "request_id": "req-group-1", "action": "confirm",
              "comment": "one SIM box, same handset", "numbers": [r1, r2]},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    assert store.is_blocked(r1) and store.is_blocked(r2)
    with store._read() as s:
        acts = s.execute(sa.select(ConsoleAction.number, ConsoleAction.action, ConsoleAction.actor)).all()
    assert sorted(acts) == sorted([(blocked, "confirm", "ana"), (r1, "confirm", "ana"), (r2, "confirm", "ana")])
    assert ana.post(f"/flags/{blocked}/group", data={"request_id": "req-group-2", "action": "confirm",
                                                    "comment": "x", "numbers": [r1]}).status_code == 403  # fmt: skip


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example", "https://evil.example/"])
def test_login_never_redirects_off_site(app, target: str) -> None:
    client = TestClient(app)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": "ana", "password": PASSWORD, "csrf": token, "next": target},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/"
