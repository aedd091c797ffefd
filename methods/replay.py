"""Fine-tune on window t mixed with a reservoir sample of past train interactions."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

VERSION = "2"  # 2: replayed rows keep their timestamps (time-ordered fits, profiles)
COLUMNS = ("user_idx", "item_idx", "positive", "timestamp")


@dataclass(frozen=True)
class Params:
    buffer_size: int = 5000  # interactions kept in the reservoir
    replay_ratio: float = 1.0  # replayed rows per new row (capped by the buffer)
    lr: float = 0.003
    epochs: int = 3

    def __post_init__(self):
        if self.buffer_size < 1 or self.replay_ratio < 0:
            raise ValueError("buffer_size must be >= 1 and replay_ratio >= 0")


def reservoir(buffer: dict | None, seen: int, new: pd.DataFrame, size: int, rng):
    """Algorithm R over the rows of `new`, in stream order; returns (buffer, seen).

    After it, every row streamed so far is in the buffer with probability size / seen."""
    cols = {c: new[c].to_numpy() for c in COLUMNS if c in new}
    fill = 0 if buffer is None else len(buffer[COLUMNS[0]])
    take = min(size - fill, len(new))  # until the buffer is full, every row goes in
    if buffer is None:
        buffer = {c: cols[c][:take].copy() for c in cols}
    else:
        buffer = {c: np.concatenate([buffer[c], cols[c][:take]]) for c in cols}
    rest = np.arange(take, len(new))
    if len(rest):
        # row r of `new` is the (seen + r + 1)-th row of the stream: its slot ~ U{0..seen+r}
        slot = rng.integers(0, seen + rest + 1)
        keep = slot < size
        rows, slots = rest[keep], slot[keep]
        # a later row overwrites an earlier one that drew the same slot: keep the last write
        last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
        for c in cols:
            buffer[c][slots[last]] = cols[c][rows[last]]
    return buffer, seen + len(new)


def search_space(trial):
    return {
        "buffer_size": trial.suggest_int("buffer_size", 1000, 20000, log=True),
        "replay_ratio": trial.suggest_float("replay_ratio", 0.25, 2.0),
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "epochs": trial.suggest_int("epochs", 1, 5),
    }


def update(ctx, params):
    state = ctx.state
    if "buffer" not in state:  # first update: stream the history (base period) in
        state["buffer"], state["seen"] = reservoir(
            None, 0, ctx.history, params.buffer_size, ctx.rng
        )
    buffer = pd.DataFrame(state["buffer"])
    n_replay = min(len(buffer), int(round(params.replay_ratio * len(ctx.window))))
    pick = np.sort(ctx.rng.choice(len(buffer), size=n_replay, replace=False))
    mixed = pd.concat([ctx.window[list(buffer.columns)], buffer.iloc[pick]], ignore_index=True)
    ctx.fit(ctx.model, mixed, lr=params.lr, epochs=params.epochs)
    state["buffer"], state["seen"] = reservoir(
        state["buffer"], state["seen"], ctx.window, params.buffer_size, ctx.rng
    )
    return ctx.model
