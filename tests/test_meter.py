"""The cost meter on CPU."""

import numpy as np
import pytest

from incbench.meter import Meter


def test_peak_memory_sees_a_known_allocation():
    with Meter() as small:
        np.ones(1000).sum()
    with Meter() as big:
        block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        block.sum()
        del block
    assert big.result.peak_mem_mb - small.result.peak_mem_mb > 250
    assert big.result.peak_mem_increase_mb > 250 and small.result.peak_mem_increase_mb < 50


def test_times_are_measured():
    with Meter() as m:
        sum(i * i for i in range(200_000))
    assert m.result.wall_s > 0 and m.result.cpu_s > 0


def _probe_model():
    import pandas as pd

    from incbench.backbones import mf

    model = mf.build(mf.Params(dim=4), n_users=6, n_items=6, seed=0)
    probe = pd.DataFrame({"user_idx": [0, 1, 2, 3, 4], "item_idx": [1, 2, 3, 4, 5]})
    return model, probe


def test_flops_match_a_hand_count_for_a_small_model():
    from incbench.flops import update_flops

    model, probe = _probe_model()
    B, d = 5, 4
    lookups = 2 * B * d + 2 * B  # user + item factor rows and bias rows gathered
    head = 2 * B * d * 1  # Linear(4 -> 1) on p_u * q_i
    # the training step's L2 penalty reuses the gathered rows (score_and_penalty): no lookup
    forward = lookups + head
    # backward: the head's matmul twice (grad input + grad weight), every lookup scattered back
    backward = 2 * head + lookups
    assert update_flops(model, ("embeddings", "biases", "head"), probe, B) == forward + backward
    # only the head trainable: autograd computes just the head's weight gradient
    assert update_flops(model, ("head",), probe, B) == forward + head
    # scaling: 10x the examples, 10x the FLOPs
    assert update_flops(model, ("head",), probe, 10 * B) == 10 * (forward + head)


def test_flop_probe_changes_nothing():
    import torch

    from incbench.flops import update_flops

    model, probe = _probe_model()
    before = [p.detach().clone() for p in model.parameters()]
    update_flops(model, ("head",), probe, 100)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_meter_sees_other_processes_work():
    """A busy sibling process during the block shows as others' CPU share."""
    import subprocess
    import sys
    import time

    spin = "import time\nend = time.time() + 0.8\nwhile time.time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        with Meter() as m:
            time.sleep(0.6)
    finally:
        child.wait()
    assert m.result.other_cpu_share > 0.15  # one of the machine's cores was busy elsewhere
    assert 0.0 <= m.result.steal_share <= 1.0 and m.result.other_cpu_share <= 1.0


@pytest.mark.parametrize("groups", [("layer.1", "projection", "head"), ("user_tower", "head")])
@pytest.mark.parametrize("cap", [0, 3])
def test_update_flops_equal_the_flops_counted_over_the_real_fit(small_project, groups, cap):
    """The probe model (rates per example, per unique item, per step; validation passes;
    pre-fit work) predicts the FLOPs of a real text fit — encoder trained or not, early
    stopping or a step cap — as FlopCounterMode counts them over the whole fit."""
    import copy

    from incbench import flops, train
    from incbench.meter import count_flops
    from incbench.protocol import base_train
    from incbench.split import load_windows
    from tests.conftest import tiny_text

    params, _, m0 = tiny_text(small_project)
    windows = load_windows(small_project / "data" / "windows" / "synthetic")
    rows = base_train(windows).iloc[:600]
    model = copy.deepcopy(m0)
    model.invalidate()
    result = {}

    def real_fit():
        result["fit"] = train.fit(model, rows, n_items=windows.known(0)[1], n_negatives=2,
                                  lr=0.01, epochs=3, batch_size=256, seed=0, groups=list(groups),
                                  max_steps=cap, val_fraction=0.2, patience=1)  # fmt: skip

    counted = count_flops(real_fit)
    fit = result["fit"]
    capped = bool(cap) and "layer.1" in groups  # the cap binds only encoder fits
    assert fit.steps > 0 and (fit.eval_calls > 0) == (not capped)
    assert (fit.unique_items > 0) == ("layer.1" in groups)
    predicted = flops.update_flops(model, groups, rows.iloc[:32], fit)  # PROBE_ROWS
    assert predicted == pytest.approx(counted, rel=1e-6)


def test_contention_counts_only_updates_long_enough_to_measure():
    import pandas as pd

    from incbench.meter import TICK_S, contention

    rows = pd.DataFrame({"update_wall_s": [0.004, 0.005, TICK_S, 2.0],
                         "other_cpu_share": [1.0, 0.9, 0.3, 0.1],
                         "steal_share": [0.0, 0.0, 0.0, 0.4]})  # fmt: skip
    assert contention(rows) == {"contended_windows": 2, "other_cpu_share_max": 0.4}
    assert contention(rows.iloc[:2]) == {"contended_windows": 0, "other_cpu_share_max": None}
