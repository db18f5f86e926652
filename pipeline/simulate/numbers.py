"""Identities as integers: phone numbers, IMSIs and IMEIs, vectorised.

The generator keeps every E.164 number as the int64 of its digits (``+84912345678`` is
``84912345678``), IMSIs and IMEIs likewise, so that millions of records are built with numpy and
turned into strings only once, by Arrow, when a day is written. The numbering plan
(``features.numbering``) stays the one definition of ranges; :class:`NumberRanges` only reads
its prefix table in integer form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.numbering import NumberingPlan

_POW10 = 10 ** np.arange(19, dtype=np.int64)


def digit_count(values: np.ndarray) -> np.ndarray:
    """Decimal digits of positive int64 values."""
    return np.searchsorted(_POW10, values, side="right").astype(np.int64)


def e164_strings(values: np.ndarray) -> pa.Array:
    """``+`` and the digits, as an Arrow string array (Arrow's cast is C++ fast)."""
    digits = pc.cast(pa.array(values, type=pa.int64()), pa.string())
    return pc.binary_join_element_wise(pa.scalar("+"), digits, "")


def digit_strings(values: np.ndarray) -> pa.Array:
    """Digits of non-negative values, null where the value is negative (absent)."""
    return pc.cast(pa.array(values, type=pa.int64(), mask=values < 0), pa.string())


def prefix_int(prefix: str) -> int:
    return int(prefix.lstrip("+"))


def luhn_complete(body: np.ndarray) -> np.ndarray:
    """Append the Luhn check digit to 14-digit IMEI bodies (3GPP TS 23.003)."""
    total = np.zeros(len(body), dtype=np.int64)
    rest = body.copy()
    # rightmost body digit is doubled, then every second one to the left
    for position in range(14):
        d = rest % 10
        rest //= 10
        if position % 2 == 0:
            d = d * 2
            d = np.where(d > 9, d - 9, d)
        total += d
    check = (10 - total % 10) % 10
    return body * 10 + check


def allocate_imeis(rng: np.random.Generator, tacs: np.ndarray) -> np.ndarray:
    """One unique IMEI per requested device; devices of one TAC get distinct serials."""
    tacs = np.asarray(tacs, dtype=np.int64)
    n = len(tacs)
    order = np.argsort(tacs, kind="stable")
    sorted_tacs = tacs[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_tacs)) + 1]
    counts = np.diff(np.r_[starts, n])
    if counts.size and counts.max() > 900_000:
        raise ValueError("too many devices for one TAC")
    rank = np.arange(n) - np.repeat(starts, counts)
    # a random first serial per TAC keeps serials from looking like a counter from zero
    offset = np.repeat(rng.integers(0, 1_000_000 - counts, size=len(counts)), counts)
    serial = np.empty(n, dtype=np.int64)
    serial[order] = rank + offset
    return luhn_complete(tacs * 1_000_000 + serial)


@dataclass(frozen=True)
class _RuleGroup:
    total_digits: int
    prefix_digits: int
    prefixes: np.ndarray  # sorted
    operators: np.ndarray  # operator index per prefix, -1 for none
    mobile: np.ndarray  # bool per prefix


class NumberRanges:
    """Integer view of the numbering plan: home operator and mobile range of int numbers."""

    def __init__(self, plan: NumberingPlan) -> None:
        self.plan = plan
        self.operators: tuple[str, ...] = plan.operators
        cc = plan.country_code
        self.country_code = int(cc)
        groups: dict[tuple[int, int], list[tuple[int, int, bool]]] = {}
        for rule in plan.prefix_rules():
            op = self.operators.index(rule.operator) if rule.operator else -1
            for nsn in rule.nsn_lengths:
                key = (len(cc) + nsn, len(rule.prefix) - 1)
                groups.setdefault(key, []).append((prefix_int(rule.prefix), op, rule.kind == "mobile"))
        self._groups = []
        for (total, plen), rows in sorted(groups.items()):
            rows.sort()
            self._groups.append(
                _RuleGroup(
                    total,
                    plen,
                    np.array([r[0] for r in rows], dtype=np.int64),
                    np.array([r[1] for r in rows], dtype=np.int8),
                    np.array([r[2] for r in rows], dtype=bool),
                )
            )

    def _lookup(self, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        numbers = np.asarray(numbers, dtype=np.int64)
        op = np.full(len(numbers), -1, dtype=np.int8)
        mobile = np.zeros(len(numbers), dtype=bool)
        found = np.zeros(len(numbers), dtype=bool)
        ndig = digit_count(np.maximum(numbers, 1))
        for g in self._groups:
            sel = np.flatnonzero((ndig == g.total_digits) & ~found)
            if sel.size == 0:
                continue
            lead = numbers[sel] // _POW10[g.total_digits - g.prefix_digits]
            pos = np.clip(np.searchsorted(g.prefixes, lead), 0, len(g.prefixes) - 1)
            hit = g.prefixes[pos] == lead
            rows = sel[hit]
            op[rows] = g.operators[pos[hit]]
            mobile[rows] = g.mobile[pos[hit]]
            found[rows] = True
        return op, mobile

    def operator_of(self, numbers: np.ndarray) -> np.ndarray:
        """Operator index owning each number (mobile or fixed range), -1 for none."""
        return self._lookup(numbers)[0]

    def is_mobile(self, numbers: np.ndarray) -> np.ndarray:
        return self._lookup(numbers)[1]

    def mobile_prefixes(self, op: str) -> list[int]:
        return [prefix_int(p) for p in self.plan.mobile_prefixes(op)]

    def fixed_prefixes(self, op: str) -> list[int]:
        return [prefix_int(p) for p in self.plan.fixed_prefixes(op)]

    @property
    def mobile_suffix_digits(self) -> int:
        """Digits after a two-digit mobile prefix (``+84`` ``91`` ``2345678``)."""
        return self.plan.mobile_nsn_length - 2

    def unallocated_prefixes(self) -> list[int]:
        """Two-digit national prefixes (as ``84dd``) with no allocated range under them.

        A spoofer presenting ``+84`` + one of these + 7 digits presents an unallocated CLI
        (Ofcom's invalid-CLI rule, DOMAIN.md); the plan decides which they are.
        """
        cc = self.plan.domestic_prefix
        taken = {r.prefix[len(cc) : len(cc) + 2] for r in self.plan.prefix_rules()}
        special = {s[len(cc) : len(cc) + 2] for s in self.plan.special_numbers() if s.startswith(cc)}
        free = [d for d in (f"{i:02d}" for i in range(10, 100)) if d not in taken | special]
        if not free:
            raise ValueError("the numbering plan leaves no unallocated two-digit prefix")
        return [int(f"{self.country_code}{d}") for d in free]


def random_numbers(rng: np.random.Generator, prefixes: np.ndarray, *, suffix_digits: int | np.ndarray) -> np.ndarray:
    """``prefix`` followed by ``suffix_digits`` random digits, per element."""
    prefixes = np.asarray(prefixes, dtype=np.int64)
    scale = _POW10[np.asarray(suffix_digits, dtype=np.int64)]
    return prefixes * scale + (rng.random(len(prefixes)) * scale).astype(np.int64)


def unique_random_numbers(
    rng: np.random.Generator,
    prefixes: np.ndarray,
    *,
    suffix_digits: int | np.ndarray,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Like :func:`random_numbers`, redrawing duplicates (and excluded values) until unique."""
    prefixes = np.asarray(prefixes, dtype=np.int64)
    digits = np.broadcast_to(np.asarray(suffix_digits, dtype=np.int64), prefixes.shape)
    out = random_numbers(rng, prefixes, suffix_digits=digits)
    banned = np.asarray(exclude if exclude is not None else [], dtype=np.int64)
    for _ in range(100):
        _, first = np.unique(out, return_index=True)
        bad = np.ones(len(out), dtype=bool)
        bad[first] = False
        bad |= np.isin(out, banned)
        if not bad.any():
            return out
        out[bad] = random_numbers(rng, prefixes[bad], suffix_digits=digits[bad])
    raise ValueError("cannot draw enough distinct numbers under these prefixes")
