"""Negative policies and how their candidates are merged, on plain arrays (no records).

Three policies propose candidates for one training pair (query, positive):

* `same_category` (MOON): other products of the positive's category (full path), drawn at
  random with the pair's seeded generator;
* `knn`: the query's nearest catalogue products, hardest first, after skipping the top
  `skip_top` survivors (the likeliest unlabelled positives);
* `session`: the positives of other queries of the same session, and optionally of queries
  within a time window, hardest first (what the same user looked at in the same context).

Every candidate passes the same false-negative filter: never the positive's group (which
includes the positive), never a product that another query with the same text points at
(moon.data.answers), and never a candidate whose score exceeds `relative_margin` x the
positive's score. Policies are merged round-robin in the configured order, so each gets
an equal share of the k slots and a policy that runs dry leaves its slots to the others;
a product proposed twice keeps the first policy that proposed it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterator, Literal, Optional, Sequence, get_args

import numpy as np

Policy = Literal["same_category", "knn", "session"]
POLICIES: tuple[str, ...] = get_args(Policy)


@dataclass
class Catalogue:
    """The products negatives are drawn from: ids, integer codes and unit vectors per row."""

    ids: list[str]
    groups: np.ndarray
    categories: np.ndarray
    vectors: np.ndarray
    _by_category: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.groups) == len(self.categories) == len(self.vectors) == n):
            raise ValueError("catalogue ids, groups, categories and vectors must have the same length")
        order = np.argsort(self.categories, kind="stable")
        codes, starts = np.unique(self.categories[order], return_index=True)
        bounds = list(starts[1:]) + [n]
        self._by_category = {int(c): order[s:e] for c, s, e in zip(codes, starts, bounds)}

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of_category(self, code: int) -> np.ndarray:
        return self._by_category.get(int(code), np.empty(0, dtype=np.int64))


@dataclass
class SessionLog:
    """The behaviour log reduced to what the session policy needs, one entry per query."""

    sessions: np.ndarray
    """int code per query, -1 when the query has no session"""
    timestamps: np.ndarray
    """float seconds per query, NaN when unknown"""
    positives: np.ndarray
    """catalogue row of each query's positive, -1 when not in the catalogue"""
    window: Optional[float] = None
    cap: int = 64
    _by_session: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _time_order: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False)
    _sorted_times: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def __post_init__(self) -> None:
        known = np.flatnonzero((self.sessions >= 0) & (self.positives >= 0))
        order = known[np.argsort(self.sessions[known], kind="stable")]
        codes, starts = np.unique(self.sessions[order], return_index=True)
        bounds = list(starts[1:]) + [len(order)]
        self._by_session = {int(c): self.positives[order[s:e]] for c, s, e in zip(codes, starts, bounds)}
        timed = np.flatnonzero(~np.isnan(self.timestamps) & (self.positives >= 0))
        self._time_order = timed[np.argsort(self.timestamps[timed], kind="stable")]
        self._sorted_times = self.timestamps[self._time_order]

    def candidates(self, entry: int) -> np.ndarray:
        """Catalogue rows seen in the same session or (if `window`) within the time window."""
        rows = [self._by_session.get(int(self.sessions[entry]), np.empty(0, dtype=np.int64))
                if self.sessions[entry] >= 0 else np.empty(0, dtype=np.int64)]
        t = self.timestamps[entry]
        if self.window is not None and not np.isnan(t):
            lo = np.searchsorted(self._sorted_times, t - self.window, side="left")
            hi = np.searchsorted(self._sorted_times, t + self.window, side="right")
            near = self._time_order[lo:hi]
            near = near[np.argsort(np.abs(self.timestamps[near] - t), kind="stable")[:self.cap]]
            rows.append(self.positives[near])
        return np.unique(np.concatenate(rows))


@dataclass
class PolicySettings:
    """The knobs of candidate generation (a view of MinerConfig)."""

    k: int
    policies: Sequence[str]
    skip_top: int = 0
    relative_margin: Optional[float] = 0.95
    oversample: int = 4


@dataclass
class Counters:
    """What the filters removed, summed over pairs (reported, never silent)."""

    same_group: int = 0
    shared_answer: int = 0
    margin: int = 0
    skipped_top: int = 0


def pair_rng(seed: int, query_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, query id): output is independent of batching."""
    digest = hashlib.blake2b(query_id.encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


class PairNegatives:
    """Candidate streams for one pair, filtered, merged round-robin into at most k negatives."""

    def __init__(self, catalogue: Catalogue, query: np.ndarray, positive: int, settings: PolicySettings,
                 counters: Counters, answers: Sequence[int] = ()):
        self.cat, self.q, self.pos = catalogue, query, positive
        self.answers = set(answers)
        self.settings, self.counters = settings, counters
        self.group = catalogue.groups[positive]
        pos_score = float(catalogue.vectors[positive] @ query)
        margin = settings.relative_margin
        self.threshold = margin * pos_score if margin is not None else np.inf

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return self.cat.vectors[rows] @ self.q if len(rows) else np.empty(0, dtype=np.float32)

    def _filter(self, rows: np.ndarray, scores: np.ndarray, skip: int = 0) -> Iterator[tuple[int, float]]:
        for row, score in zip(rows.tolist(), scores.tolist()):
            if self.cat.groups[row] == self.group:
                self.counters.same_group += 1
                continue
            if row in self.answers:
                self.counters.shared_answer += 1
                continue
            if skip > 0:
                skip -= 1
                self.counters.skipped_top += 1
                continue
            if score > self.threshold:
                self.counters.margin += 1
                continue
            yield row, score

    def knn(self, ids: np.ndarray) -> Iterator[tuple[int, float]]:
        rows = ids[ids >= 0]
        return self._filter(rows, self._scores(rows), skip=self.settings.skip_top)

    def same_category(self, rng: np.random.Generator) -> Iterator[tuple[int, float]]:
        pool = self.cat.rows_of_category(self.cat.categories[self.pos])
        take = min(len(pool), self.settings.k * self.settings.oversample + 8)
        rows = pool[rng.choice(len(pool), size=take, replace=False)] if take else pool
        return self._filter(rows, self._scores(rows))

    def session(self, rows: np.ndarray) -> Iterator[tuple[int, float]]:
        scores = self._scores(rows)
        order = np.argsort(-scores, kind="stable")
        return self._filter(rows[order], scores[order])

    def merge(self, streams: dict[str, Iterator[tuple[int, float]]]) -> list[tuple[int, str, float]]:
        """Round-robin over policies in configured order; (row, policy, score) per negative."""
        chosen: list[tuple[int, str, float]] = []
        seen: set[int] = set()
        active = [p for p in self.settings.policies if p in streams]
        while active and len(chosen) < self.settings.k:
            for policy in list(active):
                picked = next(((r, s) for r, s in streams[policy] if r not in seen), None)
                if picked is None:
                    active.remove(policy)
                    continue
                seen.add(picked[0])
                chosen.append((picked[0], policy, picked[1]))
                if len(chosen) == self.settings.k:
                    break
        return chosen
