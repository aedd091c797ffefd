"""`incbench split NAME`: cut a dataset into a base period and time windows (DESIGN.md s. 2).

    time ───────────────────────────────────────────────────────────────────────────────►
    │◄──────────── base period ────────────►│◄─ window 1 ─►│◄─ window 2 ─►│ … │◄─ window N ─►│
    │   first `base_fraction` of the rows   │  equal row counts (window_mode: count)        │
    │   (pretraining M0; tuning replays     │  or equal durations (window_mode: duration)   │
    │    the protocol inside it)            │                                                │
    cuts fall only between distinct timestamps: one second never straddles two windows

    inside every period, once, under `protocol.seed` (identical for every method and run seed):
    ┌──────────────── train (1 - holdout_fraction) ────────────────┬─ holdout ─┐  random rows
    (holdout_mode: tail — the period's last rows by time are the holdout: a time-ordered
    validation part, as LSAT's 90/10)

Samples (`min_history`): a user's first `min_history` interactions are history, not samples:
they are in no period (the manifest counts them). window_mode fixed (the LSAT preset,
config.PRESETS: min_history 10, 19 windows of 10,000, base 10,000, holdout tail 0.1):

    samples by time ──────────────────────────────────────────────────────────────────────►
    │◄── earlier samples: in no period ──►│◄ base: base_rows ►│◄ window_rows ►│ … │◄ window_rows ►│
    (base_rows 0: every earlier sample is in the base)          exact counts: a cut may fall
                                                                inside one second (rows keep
                                                                their (time, user, item) order)

Rows are ordered by (timestamp, user, item). `user_idx` / `item_idx` number users and items in
order of first appearance, so the users known by the end of window t are exactly
`user_idx < manifest.windows[t].n_users_known` (same for items): models grow by appending rows.
`positive = rating >= positive_threshold` (every row is positive when a dataset has no ratings).

Output, `data/windows/<name>/`: `window-0.parquet` (the base period) … `window-N.parquet`,
`items.parquet` / `users.parquet` (side information by index), and `manifest.json`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incbench import io
from incbench.config import ConfigError, Protocol
from incbench.data import Tables

PART = pd.CategoricalDtype(["train", "holdout"])


def _nearest_cut(valid: np.ndarray, target: float) -> int:
    """The valid cut position (a timestamp boundary) nearest to `target`, lower on a tie."""
    k = int(np.searchsorted(valid, target))
    options = [valid[j] for j in (k - 1, k) if 0 <= j < len(valid)]
    return int(min(options, key=lambda c: (abs(c - target), c)))


def cut_points(ts: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Row offsets [first, base_end, w1_end, …, N] for sorted timestamps `ts` (first > 0 only
    in window_mode fixed, when rows before the base are in no period)."""
    n = len(ts)
    if protocol.window_mode == "fixed":
        return _fixed_cuts(n, protocol)
    valid = np.flatnonzero(ts[1:] != ts[:-1]) + 1  # cuts allowed only where the second changes
    if len(valid) < protocol.n_windows:
        raise ConfigError(
            f"dataset too small for the windows asked: {len(valid) + 1} distinct timestamps "
            f"cannot make a base period and {protocol.n_windows} windows; lower "
            "protocol.n_windows in params.yaml or use a larger dataset"
        )
    base_end = _nearest_cut(valid, protocol.base_fraction * n)
    cuts = [0, base_end]
    if protocol.window_mode == "count":
        step = (n - base_end) / protocol.n_windows
        cuts += [_nearest_cut(valid, base_end + step * k) for k in range(1, protocol.n_windows)]
    else:
        t0, t1 = int(ts[base_end]), int(ts[-1]) + 1
        times = [t0 + (t1 - t0) * k / protocol.n_windows for k in range(1, protocol.n_windows)]
        cuts += [int(np.searchsorted(ts, np.ceil(t), side="left")) for t in times]
    cuts.append(n)
    return _checked(np.asarray(cuts, dtype=np.int64), protocol)


def _fixed_cuts(n: int, protocol: Protocol) -> np.ndarray:
    """window_mode fixed: exact sample counts, counted back from the newest sample."""
    first_window = n - protocol.n_windows * protocol.window_rows
    need = protocol.n_windows * protocol.window_rows + max(protocol.base_rows, 1)
    if first_window < max(protocol.base_rows, 1):
        raise ConfigError(
            f"dataset too small for the fixed windows asked: {n} samples (after min_history="
            f"{protocol.min_history}) cannot make {protocol.n_windows} windows of "
            f"{protocol.window_rows} and a base of {protocol.base_rows or 'at least 1'} "
            f"({need} needed); lower protocol.n_windows, window_rows or base_rows, or use a "
            "larger dataset"
        )
    first = first_window - protocol.base_rows if protocol.base_rows else 0
    cuts = [first] + [first_window + k * protocol.window_rows for k in range(protocol.n_windows)]
    return _checked(np.asarray(cuts + [n], dtype=np.int64), protocol)


def _checked(cuts: np.ndarray, protocol: Protocol) -> np.ndarray:
    sizes = np.diff(cuts)
    if (sizes < protocol.min_window_rows).any():
        raise ConfigError(
            "dataset too small for the windows asked: period sizes "
            f"{sizes.tolist()} (base first) fall below protocol.min_window_rows="
            f"{protocol.min_window_rows}; lower protocol.n_windows or min_window_rows, change "
            "base_fraction, or use window_mode: count"
        )
    return cuts


def samples_mask(user: np.ndarray, min_history: int) -> np.ndarray:
    """Rows (in time order) that are samples: each user's interactions from the
    (min_history + 1)-th on; the earlier ones are that user's history."""
    if min_history == 0:
        return np.ones(len(user), dtype=bool)
    rank = pd.Series(user).groupby(user, sort=False).cumcount().to_numpy()
    return rank >= min_history


def holdout_mask(
    n: int, fraction: float, seed: int, window: int, mode: str = "random"
) -> np.ndarray:
    """Exactly round(fraction * n) rows of a window: random under (protocol seed, window), or
    (mode tail) the window's last rows in time order."""
    k = int(round(fraction * n))
    mask = np.zeros(n, dtype=bool)
    if k and mode == "tail":
        mask[n - k :] = True
    elif k:
        mask[np.random.default_rng([seed, window]).permutation(n)[:k]] = True
    return mask


def split(tables: Tables, protocol: Protocol):
    """Return (one frame per period, items frame, users frame, per-period manifest entries,
    counts of the rows in no period)."""
    inter = tables.interactions
    user = inter["user"].to_numpy()
    item = inter["item"].to_numpy()
    ts = inter["timestamp"].to_numpy()
    order = np.lexsort((item, user, ts))
    user, item, ts = user[order], item[order], ts[order]
    rating = inter["rating"].to_numpy()[order]
    del order
    keep = samples_mask(user, protocol.min_history)
    history_rows = int((~keep).sum())
    if history_rows:
        user, item, ts, rating = user[keep], item[keep], ts[keep], rating[keep]
    del keep
    cuts = cut_points(ts, protocol)
    first = int(cuts[0])  # window_mode fixed: samples before the base are in no period
    if first:
        user, item, ts, rating = user[first:], item[first:], ts[first:], rating[first:]
        cuts = cuts - first
    user_idx, user_ids = pd.factorize(user, sort=False)
    item_idx, item_ids = pd.factorize(item, sort=False)
    positive = np.where(np.isnan(rating), True, rating >= protocol.positive_threshold)

    frames, entries = [], []
    n_users_known = n_items_known = 0
    for w in range(len(cuts) - 1):
        lo, hi = int(cuts[w]), int(cuts[w + 1])
        hold = holdout_mask(
            hi - lo, protocol.holdout_fraction, protocol.seed, w, protocol.holdout_mode
        )
        frame = pd.DataFrame(
            {
                "user": user[lo:hi],
                "item": item[lo:hi],
                "user_idx": user_idx[lo:hi].astype(np.int64),
                "item_idx": item_idx[lo:hi].astype(np.int64),
                "rating": rating[lo:hi],
                "timestamp": ts[lo:hi],
                "positive": positive[lo:hi],
                "part": pd.Categorical.from_codes(hold.astype(np.int8), dtype=PART),
            }
        )
        new_users_known = max(n_users_known, int(user_idx[lo:hi].max()) + 1)
        new_items_known = max(n_items_known, int(item_idx[lo:hi].max()) + 1)
        entries.append(
            {
                "window": w,
                "name": "base" if w == 0 else f"window-{w}",
                "start": int(ts[lo]),
                "end": int(ts[hi - 1]),
                "start_utc": _iso(ts[lo]),
                "end_utc": _iso(ts[hi - 1]),
                "rows": hi - lo,
                "train_rows": int((~hold).sum()),
                "holdout_rows": int(hold.sum()),
                "users": int(frame["user_idx"].nunique()),
                "items": int(frame["item_idx"].nunique()),
                "new_users": new_users_known - n_users_known,
                "new_items": new_items_known - n_items_known,
                "n_users_known": new_users_known,
                "n_items_known": new_items_known,
                "positives": int(frame["positive"].sum()),
            }
        )
        n_users_known, n_items_known = new_users_known, new_items_known
        frames.append(frame)

    items = _side_table(tables.items, "item", item_ids)
    users = _side_table(tables.users, "user", user_ids)
    # rows in no period: every user's first min_history rows; (fixed) samples before the base
    outside = {"history_rows": history_rows, "earlier_samples": first}
    return frames, items, users, entries, outside


def _side_table(side: pd.DataFrame | None, key: str, ids: np.ndarray) -> pd.DataFrame:
    base = pd.DataFrame({f"{key}_idx": np.arange(len(ids), dtype=np.int64), key: ids})
    if side is None:
        return base
    side = side.drop_duplicates(key)
    return base.merge(side, on=key, how="left", validate="one_to_one")


def _iso(t: int) -> str:
    return dt.datetime.fromtimestamp(int(t), tz=dt.timezone.utc).isoformat()


def write_split(
    tables: Tables, protocol: Protocol, out_dir: Path, dataset: dict[str, Any]
) -> dict[str, Any]:
    """Split and write `out_dir` atomically (the whole folder appears at once)."""
    frames, items, users, entries, outside = split(tables, protocol)
    with io.atomic_dir(out_dir) as build:
        files = {}
        for frame, entry in zip(frames, entries):
            name = f"window-{entry['window']}.parquet"
            io.write_parquet(build / name, frame)
            entry["file"] = name
            files[name] = io.sha256_file(build / name)
        for name, table in (("items.parquet", items), ("users.parquet", users)):
            io.write_parquet(build / name, table)
            files[name] = io.sha256_file(build / name)
        manifest = {
            "dataset": dataset,
            "protocol": dataclasses.asdict(protocol),
            "rows": int(sum(e["rows"] for e in entries)),
            **outside,
            "n_windows": len(entries) - 1,
            "windows": entries,
            "sha256": files,
        }
        io.write_json(build / "manifest.json", manifest)
    return manifest


def split_named(name: str, root: Path) -> dict[str, Any]:
    """`incbench split NAME`: validate the protocol, read data/raw/<name>, write the split."""
    from incbench.config import load_params, protocol_from
    from incbench.data import DataError, get
    from incbench.fetch import read_checked

    protocol = protocol_from(load_params(root))  # validated before any work
    ds = get(name, root)
    raw = root / "data" / "raw" / name
    source_file = raw / "SOURCE.json"
    if not source_file.exists():
        raise DataError(f"{name} is not fetched: run `incbench fetch {name}` first")
    source = json.loads(source_file.read_text())
    tables = read_checked(ds, raw)
    served = {k: source[k] for k in ("served_by", "location", "files", "params") if k in source}
    info = {"name": ds.name, "version": ds.version, "source": served}
    return write_split(tables, protocol, root / "data" / "windows" / name, info)


@dataclasses.dataclass(frozen=True)
class Windows:
    """A split loaded for the protocol loop: `periods[0]` is the base, 1..N the windows."""

    manifest: dict[str, Any]
    periods: list[pd.DataFrame]
    items: pd.DataFrame
    users: pd.DataFrame

    @property
    def n_windows(self) -> int:
        return len(self.periods) - 1

    def known(self, t: int) -> tuple[int, int]:
        """(users, items) known by the end of period t."""
        entry = self.manifest["windows"][t]
        return entry["n_users_known"], entry["n_items_known"]


def load_windows(out_dir: Path) -> Windows:
    path = out_dir / "manifest.json"
    if not path.exists():
        raise ConfigError(f"no split at {out_dir}: run `incbench split {out_dir.name}` first")
    manifest = json.loads(path.read_text())
    periods = [pd.read_parquet(out_dir / e["file"]) for e in manifest["windows"]]
    items = pd.read_parquet(out_dir / "items.parquet")
    users = pd.read_parquet(out_dir / "users.parquet")
    return Windows(manifest, periods, items, users)
