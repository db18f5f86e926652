"""The blocklist state machine under random sequences (Hypothesis, stateful): block, duplicate,
unblock, expire, re-block and late replay, through the store's public API only, against a small
model of what an operator must end up holding. On SQLite and on the session's PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pytest
from factories import fixed_policy
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from streaming.blocklist.store import BlocklistStore
from streaming.policy import decide_sims

NUMBERS = ("+84961000001", "+84961000002", "+84961000003")
POLICY = fixed_policy()
TTL = dt.timedelta(hours=POLICY.spam_robocall.ttl_hours)
START = dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC)
WINDOW_END = pd.Timestamp("2026-11-02T06:00", tz="UTC")


@dataclass
class Block:
    version: int
    expires_at: dt.datetime


def make_machine(open_store: Callable[[], BlocklistStore]) -> type[RuleBasedStateMachine]:
    class BlocklistMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.store = open_store()
            self.now = START
            self.head = 0
            self.active: dict[str, Block] = {}  # the store's active state per number (lapsed or not)
            self.cleared: set[str] = set()
            self.applied: list[tuple[str, str]] = []  # (number, batch) applied once
            self.unblocks: list[tuple[str, str, list[int]]] = []  # (number, request id, versions it wrote)
            self.ids = itertools.count(1)

        def teardown(self) -> None:
            self.store.close()

        def _apply(self, number: str, batch: str):
            frame = pd.DataFrame({"number": [number], "fraud_type": ["spam_robocall"], "score": [0.99],
                                  "operator": ["viettel"], "reasons": [["test"]], "model_name": ["m"],
                                  "model_version": ["1"], "window_end": [WINDOW_END]})
            decisions = decide_sims(frame, policy=POLICY, allowlist=self.store.allowlist_for([number]),
                                    batch_key=batch)
            return self.store.apply_decisions(decisions, now=self.now)

        @rule(number=st.sampled_from(NUMBERS))
        def block(self, number: str) -> None:
            batch = f"b:{next(self.ids)}"
            result = self._apply(number, batch)
            self.applied.append((number, batch))
            got = [(e.action, e.number, e.lifts_version) for e in result.entries]
            current = self.active.get(number)
            if number in self.cleared:
                assert got == [] and result.allowed == 1
            elif current is not None and current.expires_at > self.now:
                assert got == [] and result.already_blocked == 1
            else:
                expected = [("unblock", number, current.version)] if current is not None else []
                expected.append(("block", number, None))
                assert got == expected
                self.head += len(expected)
                self.active[number] = Block(self.head, self.now + TTL)

        @precondition(lambda self: self.applied)
        @rule(data=st.data())
        def replay(self, data: st.DataObject) -> None:
            """A batch delivered again (a restart), possibly long after an unblock or expiry."""
            number, batch = data.draw(st.sampled_from(self.applied))
            result = self._apply(number, batch)
            assert result.entries == [] and result.replayed == 1

        @rule(number=st.sampled_from(NUMBERS))
        def unblock(self, number: str) -> None:
            request = f"r-{next(self.ids)}"
            result = self.store.unblock(number, analyst="lan", reason="appeal", request_id=request, now=self.now)
            self.unblocks.append((number, request, [e.version for e in result.entries]))
            current = self.active.pop(number, None)
            expected = [("unblock", number, current.version)] if current is not None else []
            assert [(e.action, e.number, e.lifts_version) for e in result.entries] == expected
            assert result.cleared and not result.replayed
            self.head += len(expected)
            self.cleared.add(number)

        @precondition(lambda self: self.unblocks)
        @rule(data=st.data())
        def unblock_again(self, data: st.DataObject) -> None:
            """The same request again (a retried POST /unblock): nothing changes, the first answer."""
            number, request, versions = data.draw(st.sampled_from(self.unblocks))
            before = self.store.head_version()
            result = self.store.unblock(number, analyst="lan", reason="appeal", request_id=request, now=self.now)
            assert [e.version for e in result.entries] == versions and self.store.head_version() == before

        @rule(hours=st.integers(min_value=0, max_value=1000))
        def advance(self, hours: int) -> None:
            self.now += dt.timedelta(hours=hours)

        @rule()
        def expire(self) -> None:
            lifted = self.store.expire(self.now)
            due = sorted((b.expires_at, n) for n, b in self.active.items() if b.expires_at <= self.now)
            assert [(e.number, e.lifts_version) for e in lifted] == [(n, self.active[n].version) for _, n in due]
            for _, n in due:
                del self.active[n]
            self.head += len(due)

        @invariant()
        def operators_hold_what_the_model_says(self) -> None:
            assert self.store.head_version() == self.head
            entries = self.store.entries_since(0, limit=10_000)
            assert [e.version for e in entries] == list(range(1, self.head + 1))
            lifted = [e.lifts_version for e in entries if e.action == "unblock"]
            assert len(lifted) == len(set(lifted))  # a block is lifted at most once
            for number in NUMBERS:
                block = self.active.get(number)
                in_force = block is not None and block.expires_at > self.now
                assert self.store.is_blocked(number, now=self.now) == in_force, number
                assert not (in_force and number in self.cleared)

        @invariant()
        def the_audit_log_holds_and_agrees(self) -> None:
            from streaming.blocklist import audit

            assert audit.verify(self.store.engine).ok
            assert audit.disagreements(self.store.engine) == []

    return BlocklistMachine


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_blocklist_state_machine(backend: str, tmp_path, request: pytest.FixtureRequest) -> None:
    counter = itertools.count()
    if backend == "sqlite":
        template = tmp_path / "template.db"
        BlocklistStore.open(f"sqlite:///{template}").close()  # migrated once, copied per example

        def open_store() -> BlocklistStore:
            path = tmp_path / f"bl{next(counter)}.db"
            shutil.copyfile(template, path)
            return BlocklistStore.open(f"sqlite:///{path}", webhook_operators=["viettel"])
        examples = 50
    else:
        from streaming.blocklist.migrate import downgrade

        url = request.getfixturevalue("postgres_url")

        def open_store() -> BlocklistStore:
            downgrade(url)
            return BlocklistStore.open(url, webhook_operators=["viettel"])
        examples = 12
    run_state_machine_as_test(
        make_machine(open_store),
        settings=settings(max_examples=examples, stateful_step_count=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
