"""A seeded synthetic interaction stream with controllable drift (the truth is known).

The stream is divided into `n_phases` equal time phases. Between phases:

    phase:      0          1          2          3      ...
    users:   [initial] + new arrivals ---------------->   (new_user_fraction arrive after 0)
    items:   [initial] + new releases ---------------->   (new_item_fraction released after 0)
    taste:   t0  -> drift (`drift`, below), preference_shift sets how far
    pop.:    p0  -> AR(1) drift of log-popularity by popularity_drift each phase

Taste drift, per user (s = preference_shift, P = n_phases):

    drift: jumps (default)    taste[ph] = (1 - s) * taste[ph-1] + s * onehot(a NEW random
                              genre each phase): a fresh jump every phase; at large s one phase
                              replaces most of the taste (a cliff, then more cliffs)
    drift: gradual            one target genre per user, fixed for the whole stream; the taste
                              moves from its Dirichlet start along a straight line toward it:
                              taste[ph] = (1 - a[ph]) * start + a[ph] * onehot(target),
                              a[ph] = s * (ph + 0.5) / P  (`ramp`: the line a(x) = s * x
                              over the stream's time x in [0, 1], at each phase's midpoint;
                              s at the stream's end): a trend, not a cliff

    gradual, s = 0.8, P = 10, cut by the calibration protocol (base 50%, 5 windows by count):
    time    0-----------------------50%--------------------100%
    phase   |  0 |  1 |  2 |  3 |  4 |  5 |  6 |  7 |  8 |  9 |
    a[ph]    .04  .12  .20  .28  .36  .44  .52  .60  .68  .76
    period  |  base: M0 learns here  | w1 | w2 | w3 | w4 | w5 |

Every step moves each user's taste the same distance further toward the same genre, so a model
trained on the past lags more the further ahead it serves; the target's weight, s by the
stream's end, is the total shift injected. Within a phase the taste is constant; with n_phases a
multiple of (protocol windows / (1 - base_fraction)) the phase steps fall on the window cuts.

Each interaction: a user among those arrived, a genre from the user's current taste, an item
of that genre from the current popularity among released items, and a 1-5 rating that grows
with the user's taste for the genre. Same params, same seed: the same bytes.
Generation is chunked, so 25 million rows fit in a few GiB.

The truth is written beside the interactions (`truth.npz`: taste per user and phase, log-
popularity per phase, each item's genre and release phase, the phase clock). Only the `oracle`
reference reads it (incbench/references.py); splits, methods and backbones never see it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from incbench import io
from incbench.config import ConfigError, from_mapping
from incbench.data import Tables

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Western",
          "Animation", "Documentary", "Musical", "Mystery"]  # fmt: skip
DRIFTS = ("jumps", "gradual")


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
    seed: int = 0
    n_users: int = 600
    n_items: int = 300
    n_interactions: int = 20_000
    n_phases: int = 6
    n_genres: int = 8
    new_user_fraction: float = 0.4
    new_item_fraction: float = 0.3
    preference_shift: float = 0.3
    drift: Literal["jumps", "gradual"] = "jumps"  # how taste moves between phases (docstring)
    popularity_drift: float = 0.3
    popularity_spread: float = 1.0
    start: int = 1_000_000_000
    duration_days: float = 180.0
    chunk_rows: int = 1_000_000

    def __post_init__(self):
        checks = [
            (self.n_users >= 2 and self.n_items >= 2, "n_users and n_items must be >= 2"),
            (self.n_interactions >= 1, "n_interactions must be >= 1"),
            (self.n_phases >= 1, "n_phases must be >= 1"),
            (1 <= self.n_genres <= len(GENRES), f"n_genres must be in 1..{len(GENRES)}"),
            (0 <= self.new_user_fraction < 1, "new_user_fraction must be in [0, 1)"),
            (0 <= self.new_item_fraction < 1, "new_item_fraction must be in [0, 1)"),
            (0 <= self.preference_shift <= 1, "preference_shift must be in [0, 1]"),
            (self.drift in DRIFTS, f"drift must be one of {list(DRIFTS)}"),
            (0 <= self.popularity_drift <= 1, "popularity_drift must be in [0, 1]"),
            (self.duration_days > 0, "duration_days must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid synthetic params in params.yaml: {message}")


def _arrivals(rng: np.random.Generator, n: int, new_fraction: float, n_phases: int) -> np.ndarray:
    """Phase in which each entity appears; sorted, so ids grow with arrival."""
    n_new = int(round(n * new_fraction)) if n_phases > 1 else 0
    phases = np.zeros(n, dtype=np.int64)
    if n_new:
        phases[n - n_new :] = np.sort(rng.integers(1, n_phases, size=n_new))
    return phases


@dataclasses.dataclass(frozen=True)
class Truth:
    """What generated the stream, keyed by the raw user / item ids of the interactions."""

    taste: np.ndarray  # [users, phases, genres], rows sum to 1
    logpop: np.ndarray  # [phases, items]
    item_genre: np.ndarray  # [items]
    item_phase: np.ndarray  # [items] phase of release
    start: int  # phase clock: phase(ts) = min((ts - start) * n_phases // span, n_phases - 1)
    span: int

    @property
    def n_phases(self) -> int:
        return self.logpop.shape[0]

    def phase_of(self, ts: np.ndarray) -> np.ndarray:
        return np.minimum((np.asarray(ts) - self.start) * self.n_phases // self.span,
                          self.n_phases - 1)  # fmt: skip

    def expected_positive(self, phase: int, threshold: float = 4.0) -> np.ndarray:
        """[users, items]: the chance that a user's next interaction in `phase` is a liked one.

        P(item | user) = taste[user, genre(item)] * P(item | genre, phase) (the sampling of
        `simulate`), times P(rating >= threshold | affinity) = Φ((log(G * taste) - (threshold -
        3.5)) / 0.7) (the rating model: 3 + log(affinity) + N(0, 0.7), rounded: >= threshold
        after rounding iff >= threshold - 0.5 before; 0.5 for the default threshold 4).
        """
        from scipy.stats import norm

        G = self.taste.shape[2]
        released = self.item_phase - phase  # <= 0: released by `phase`
        by_genre = np.zeros((G, self.logpop.shape[1]))  # P(item | drawn genre, phase)
        for g, (cand, probs) in enumerate(
            _item_probs(self.logpop[phase : phase + 1], released, self.item_genre, G)
        ):
            by_genre[g, cand] = probs
        taste = self.taste[:, phase, :]
        affinity = taste[:, self.item_genre]  # [users, items]: taste for the item's genre
        liked = norm.cdf((np.log(np.maximum(affinity * G, 1e-3)) - (threshold - 3.5)) / 0.7)
        return (taste @ by_genre) * liked

    def save(self, path: Path) -> None:
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}
        with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> Truth:
        if not path.exists():
            raise ConfigError(f"{path} is missing: the oracle needs the generator's truth; "
                              "run `incbench fetch synthetic` again")  # fmt: skip
        with np.load(path) as z:
            return cls(**{f.name: (z[f.name] if z[f.name].ndim else int(z[f.name]))
                          for f in dataclasses.fields(cls)})  # fmt: skip


def generate_tables(p: SyntheticParams) -> Tables:
    return simulate(p)[0]


def simulate(p: SyntheticParams) -> tuple[Tables, Truth]:
    """The stream and the truth that generated it."""
    rng = np.random.default_rng(p.seed)
    P, G = p.n_phases, p.n_genres
    user_phase = _arrivals(rng, p.n_users, p.new_user_fraction, P)
    item_phase = _arrivals(rng, p.n_items, p.new_item_fraction, P)
    item_genre = rng.integers(0, G, size=p.n_items)

    # Taste per user and phase: a Dirichlet start, then the drift (module docstring).
    taste = np.empty((p.n_users, P, G), dtype=np.float32)
    taste[:, 0] = rng.dirichlet(np.full(G, 0.3), size=p.n_users)
    if p.drift == "gradual":
        base = taste[:, 0].copy()
        target = np.eye(G, dtype=np.float32)[rng.integers(0, G, size=p.n_users)]
        for ph, a in enumerate(ramp(p)):
            taste[:, ph] = (1 - a) * base + a * target
    else:  # jumps: toward a new random genre every phase
        for ph in range(1, P):
            target = np.eye(G, dtype=np.float32)[rng.integers(0, G, size=p.n_users)]
            taste[:, ph] = (1 - p.preference_shift) * taste[:, ph - 1] + p.preference_shift * target
    # Log-popularity per phase: AR(1) drift with stable variance.
    logpop = np.empty((P, p.n_items))
    logpop[0] = rng.normal(0, p.popularity_spread, size=p.n_items)
    keep = np.sqrt(1 - p.popularity_drift**2)
    for ph in range(1, P):
        fresh = rng.normal(0, p.popularity_spread, size=p.n_items)
        logpop[ph] = keep * logpop[ph - 1] + p.popularity_drift * fresh

    span = int(p.duration_days * 86400)
    ts = np.sort(rng.integers(p.start, p.start + span, size=p.n_interactions))
    phase = np.minimum((ts - p.start) * P // span, P - 1)
    users_by_phase = np.searchsorted(user_phase, np.arange(P), side="right")
    item_probs = _item_probs(logpop, item_phase, item_genre, G)

    users = np.empty(p.n_interactions, dtype=np.int64)
    items = np.empty(p.n_interactions, dtype=np.int64)
    ratings = np.empty(p.n_interactions, dtype=np.float32)
    for lo in range(0, p.n_interactions, p.chunk_rows):
        hi = min(lo + p.chunk_rows, p.n_interactions)
        ph = phase[lo:hi]
        u = (rng.random(hi - lo) * users_by_phase[ph]).astype(np.int64)
        cum = np.cumsum(taste[u, ph], axis=1)
        g = np.minimum((cum < rng.random((hi - lo, 1)) * cum[:, -1:]).sum(axis=1), G - 1)
        it = np.empty(hi - lo, dtype=np.int64)
        group = ph * G + g
        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(P * G + 1))
        for k in range(P * G):
            rows = order[bounds[k] : bounds[k + 1]]
            if len(rows):
                cand, probs = item_probs[k]
                it[rows] = cand[rng.choice(len(cand), size=len(rows), p=probs)]
        affinity = taste[u, ph, item_genre[it]] * G
        score = 3.0 + np.log(np.maximum(affinity, 1e-3)) + rng.normal(0, 0.7, size=hi - lo)
        users[lo:hi], items[lo:hi] = u, it
        ratings[lo:hi] = np.clip(np.rint(score), 1, 5)

    inter = pd.DataFrame({"user": users, "item": items, "rating": ratings, "timestamp": ts})
    names = np.array(GENRES[:G])[item_genre]
    item_ids = np.arange(p.n_items)
    item_table = pd.DataFrame(
        {
            "item": item_ids,
            "title": [f"{n} story number {i}" for i, n in zip(item_ids, names)],
            "year": (1950 + item_ids % 70).astype(float),
            "genres": names,
        }
    )
    user_table = pd.DataFrame({"user": np.arange(p.n_users), "arrival_phase": user_phase})
    truth = Truth(taste, logpop, item_genre, item_phase, p.start, span)
    return Tables(inter, item_table, user_table), truth


def ramp(p: SyntheticParams) -> np.ndarray:
    """Gradual drift: the drift target's weight in each phase's taste, [phases].

    The ramp a(x) = preference_shift * x over the stream's time x in [0, 1], held in each phase
    at the phase's midpoint (its mean over the phase): equal steps of preference_shift /
    n_phases, from preference_shift / (2 n_phases) in phase 0 to preference_shift * (1 - 1 /
    (2 n_phases)) in the last; the ramp itself reaches preference_shift at the stream's end.
    """
    return p.preference_shift * (np.arange(p.n_phases) + 0.5) / p.n_phases


def _item_probs(logpop, item_phase, item_genre, G):
    """(candidates, probabilities) per (phase, genre); any released item if a genre is empty."""
    out = []
    for ph in range(logpop.shape[0]):
        released = item_phase <= ph
        for g in range(G):
            cand = np.flatnonzero(released & (item_genre == g))
            if len(cand) == 0:
                cand = np.flatnonzero(released)
            w = np.exp(logpop[ph, cand] - logpop[ph, cand].max())
            out.append((cand, w / w.sum()))
    return out


def params_from(values: dict[str, Any] | None) -> SyntheticParams:
    return from_mapping(SyntheticParams, values, "synthetic")


def generate(stage: Path, values: dict[str, Any]) -> None:
    tables, truth = simulate(params_from(values))
    truth.save(stage / "truth.npz")
    io.write_parquet(stage / "interactions.parquet", tables.interactions)
    io.write_parquet(stage / "items.parquet", tables.items)
    io.write_parquet(stage / "users.parquet", tables.users)


def read(raw: Path) -> Tables:
    files = [raw / f for f in ("interactions.parquet", "items.parquet", "users.parquet")]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise ConfigError(f"{raw} lacks {missing}: run `incbench fetch synthetic`")
    return Tables(*(pd.read_parquet(f) for f in files))
