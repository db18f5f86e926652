"""The social graph of ordinary subscribers: heavy-tailed address books with reciprocity.

A configuration model on an undirected graph: every person draws a contact count from a
lognormal (few people with hundreds of contacts, most with a dozen), most stubs pair within the
person's area (community structure), the rest across the country. Each undirected edge carries
one tie strength used in both directions, so a contact who is called often also calls back often:
reciprocity is a property of the graph, and missed calls add explicit call-backs on top
(``traffic``). Spam and SIM-box SIMs are not in this graph, which is why their calls find almost
no way back to them (DOMAIN.md: "little reciprocity").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.simulate.config import Lognormal


@dataclass(frozen=True)
class ContactGraph:
    """Adjacency in CSR form over node indices ``0..n-1``."""

    indptr: np.ndarray
    neighbours: np.ndarray
    #: per row: row index + cumulative normalised tie strength, so one ``searchsorted`` over the
    #: whole array samples a weighted neighbour for many rows at once
    _keys: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def n_edges(self) -> int:
        return len(self.neighbours) // 2

    def sample(self, rng: np.random.Generator, nodes: np.ndarray) -> np.ndarray:
        """One contact per entry of ``nodes``, weighted by tie strength."""
        targets = nodes.astype(np.float64) + rng.random(len(nodes))
        pos = np.searchsorted(self._keys, targets, side="right")
        return self.neighbours[np.minimum(pos, len(self.neighbours) - 1)]


def _pair(stubs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(stubs) % 2:
        stubs = stubs[:-1]
    return stubs[0::2], stubs[1::2]


def build_contact_graph(
    rng: np.random.Generator,
    *,
    area: np.ndarray,
    contacts: Lognormal,
    max_contacts: int,
    local_share: float,
) -> ContactGraph:
    """Contact graph over ``len(area)`` people; every person gets at least one contact."""
    n = len(area)
    if n < 2:
        raise ValueError("a contact graph needs at least two people")
    degree = np.clip(np.rint(contacts.sample(rng, n)), 1, max_contacts).astype(np.int64)
    local = rng.binomial(degree, local_share)
    glob = degree - local

    local_stubs = np.repeat(np.arange(n), local)
    # sorting by area with a random tie-break pairs stubs inside an area
    order = np.lexsort((rng.random(len(local_stubs)), area[local_stubs]))
    u1, v1 = _pair(local_stubs[order])
    global_stubs = rng.permutation(np.repeat(np.arange(n), glob))
    u2, v2 = _pair(global_stubs)
    u = np.r_[u1, u2]
    v = np.r_[v1, v2]
    keep = u != v
    u, v = u[keep], v[keep]

    # people left without a contact (self-pairs, odd stubs) get one random contact
    touched = np.zeros(n, dtype=bool)
    touched[u] = True
    touched[v] = True
    lonely = np.flatnonzero(~touched)
    if lonely.size:
        partner = (lonely + rng.integers(1, n, size=lonely.size)) % n
        u = np.r_[u, lonely]
        v = np.r_[v, partner]

    lo, hi = np.minimum(u, v), np.maximum(u, v)
    edges = np.unique(lo * n + hi)
    lo, hi = edges // n, edges % n
    strength = np.exp(rng.standard_normal(len(edges)))

    src = np.r_[lo, hi]
    dst = np.r_[hi, lo]
    w = np.r_[strength, strength]
    order = np.argsort(src, kind="stable")
    src, dst, w = src[order], dst[order], w[order]
    counts = np.bincount(src, minlength=n)
    indptr = np.r_[0, np.cumsum(counts)]
    cum = np.cumsum(w)
    row_start = np.repeat(np.r_[0.0, cum[indptr[1:-1] - 1]], counts)
    row_total = np.repeat(cum[indptr[1:] - 1], counts) - row_start
    within = (cum - row_start) / row_total
    # the last entry of each row is exactly row + 1.0, so a draw never spills into the next row
    within[indptr[1:] - 1] = 1.0
    keys = src.astype(np.float64) + within
    return ContactGraph(indptr=indptr, neighbours=dst.astype(np.int64), _keys=keys)
