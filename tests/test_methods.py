"""Method-specific guarantees: frozen, head_only, partial_unfreeze, full_retrain, replay."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from incbench import registry
from incbench.protocol import make_context, run_protocol
from tests.conftest import REPO, small_setup


def _update(root, name, overrides=None, model=None):
    setup, m0 = small_setup(root, name, overrides)
    model = copy.deepcopy(model if model is not None else m0)
    model.grow(*setup.known(1))
    ctx = make_context(setup, model, 1, [setup.windows.periods[0]], {})
    before = {g: [p.detach().clone() for p in ps] for g, ps in model.groups()}
    out = setup.spec.update(ctx, setup.mparams)
    changed = {
        g for g, ps in out.groups() if not all(torch.equal(a, b) for a, b in zip(before[g], ps))
    }
    return ctx, out, changed


def test_frozen_changes_nothing(small_project):
    ctx, out, changed = _update(small_project, "frozen")
    assert changed == set() and out is ctx.model
    result = run_protocol(*small_setup(small_project, "frozen"))
    assert (result.windows["changed_params"] == 0).all()
    assert (result.windows["delta_bytes"] == 0).all()


def test_head_only_changes_only_the_head(small_project):
    ctx, _, changed = _update(small_project, "head_only")
    assert ctx.trained == {"head"} and changed == {"head"}


@pytest.mark.parametrize("k,expect", [(0, {"head"}), (1, {"biases", "head"}),
                                      (9, {"embeddings", "biases", "head"})])  # fmt: skip
def test_partial_unfreeze_top_k(small_project, k, expect):
    ctx, _, changed = _update(small_project, "partial_unfreeze", {"k": k})
    assert ctx.trained == expect
    assert changed <= expect and "head" in changed


def test_full_retrain_does_not_start_from_previous_model(small_project):
    setup, m0 = small_setup(small_project, "full_retrain")
    other = copy.deepcopy(m0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    _, out_a, _ = _update(small_project, "full_retrain", model=m0)
    _, out_b, _ = _update(small_project, "full_retrain", model=other)
    for (name, a), (_, b) in zip(out_a.state_dict().items(), out_b.state_dict().items()):
        assert torch.equal(a, b), f"{name} depends on M_(t-1)"


def test_fine_tune_trains_every_group(small_project):
    ctx, _, changed = _update(small_project, "fine_tune")
    assert changed == set(ctx.groups)


def test_replay_reservoir_is_uniform():
    replay = registry.load("methods", "replay", REPO)
    n, size, trials = 400, 40, 3000
    stream = pd.DataFrame({"user_idx": np.arange(n), "item_idx": np.arange(n), "positive": True})
    counts = np.zeros(n)
    for trial in range(trials):
        rng = np.random.default_rng(trial)
        buffer, seen = None, 0
        for lo in range(0, n, 70):  # arrives in uneven chunks, like windows
            buffer, seen = replay.reservoir(buffer, seen, stream.iloc[lo : lo + 70], size, rng)
        assert seen == n and len(buffer["user_idx"]) == size
        assert len(set(buffer["user_idx"])) == size  # no row twice
        counts[buffer["user_idx"]] += 1
    # every row is kept with probability size / n: chi-square goodness of fit
    expected = np.full(n, trials * size / n)
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # and early rows are not favoured over late ones
    assert abs(counts[: n // 2].mean() - counts[n // 2 :].mean()) < 0.05 * expected[0]


def test_replay_mixes_buffer_into_training(small_project):
    ctx, _, _ = _update(small_project, "replay", {"buffer_size": 50})
    assert len(ctx.state["buffer"]["user_idx"]) == 50
    assert ctx.state["seen"] == len(ctx.history) + len(ctx.window)
