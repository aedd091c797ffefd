"""The contract every method in methods/ must pass; a new file is tested the moment it exists."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings

import pytest
import torch

from incbench import registry
from incbench.protocol import make_context, run_protocol
from tests.conftest import REPO, small_setup

METHODS = registry.names("methods", REPO)
BACKBONES = ["mf", "text"]  # text: a tiny random BERT (tests/conftest.py), 2 encoder steps
GRID = [(b, m) for b in BACKBONES for m in METHODS]


def test_registry_finds_the_required_methods():
    assert {
        "frozen",
        "full_retrain",
        "fine_tune",
        "head_only",
        "partial_unfreeze",
        "replay",
    } <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_file_contract(name):
    from incbench.method import get

    spec = get(name, REPO)
    assert spec.version and spec.description, "VERSION and a one-line docstring are required"
    assert dataclasses.is_dataclass(spec.params(None))


@pytest.mark.parametrize("backbone,name", GRID)
def test_runs_the_loop_and_keeps_its_invariants(small_project, backbone, name):
    setup, m0 = small_setup(small_project, name, backbone=backbone)
    m0_state = copy.deepcopy(m0.state_dict())
    result = run_protocol(setup, m0)
    summary = result.summary
    n = setup.windows.n_windows
    assert summary["status"] in ("ok", "not_applicable"), summary["reason"]
    for key, value in m0.state_dict().items():  # the shared M0 is never modified
        assert torch.equal(value, m0_state[key])
    if summary["status"] == "not_applicable":
        assert summary["reason"]
        return
    assert list(result.windows["window"]) == list(range(1, n + 1))
    for metric in ("ndcg@10", "recall@10", "hr@10", "f1@10", "accuracy", "auc"):
        value = summary["next_window"][metric]
        assert value is not None and 0.0 <= value <= 1.0, (metric, value)
    assert len(result.per_user) > 0 and set(result.per_user["window"]) == set(range(1, n + 1))
    assert len(result.retention) == sum(t + 1 for t in range(n + 1))  # R[t][0..t], M0 = row 0
    assert (result.windows["update_wall_s"] >= 0).all()
    assert (result.windows["changed_params"] <= result.windows["trainable_params"]).all()


@pytest.mark.parametrize("backbone,name", GRID)
def test_same_seed_same_summary(small_project, backbone, name):
    a = run_protocol(*small_setup(small_project, name, backbone=backbone)).summary
    b = run_protocol(*small_setup(small_project, name, backbone=backbone)).summary
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("backbone,name", GRID)
def test_only_trained_groups_change(small_project, backbone, name):
    setup, m0 = small_setup(small_project, name, backbone=backbone)
    model = copy.deepcopy(m0)
    model.grow(*setup.known(1))
    ctx = make_context(setup, model, 1, [setup.windows.periods[0]], {})
    if setup.spec.not_applicable(ctx):
        pytest.skip(f"not applicable on {backbone}")
    before = {g: [p.detach().clone() for p in ps] for g, ps in model.groups()}
    out = setup.spec.update(ctx, setup.mparams)
    if out is not model:  # a fresh model (full_retrain): nothing to compare group-wise
        return
    for group, params in model.groups():
        if group not in before:  # created by the update (lora's adapters): trained by it
            assert group in ctx.trained, f"{name} added group {group!r} without training it"
            continue
        same = all(torch.equal(a, b) for a, b in zip(before[group], params))
        if group not in ctx.trained:
            assert same, f"{name} changed group {group!r} it did not train"


@pytest.mark.parametrize("backbone,name", GRID)
def test_update_is_finite(small_project, backbone, name):
    setup, m0 = small_setup(small_project, name, backbone=backbone)
    result = run_protocol(setup, m0)
    if result.summary["status"] == "ok":
        assert all(math.isfinite(v) for v in result.windows["ndcg@10"])


@pytest.mark.parametrize("name", METHODS)
def test_search_space_fits_the_params(name):
    """A method's search space names only its Params fields, and its defaults lie inside it."""
    import optuna

    from incbench.method import get

    spec = get(name, REPO)
    space = getattr(spec.module, "search_space", None)
    if space is None:
        pytest.skip("nothing to tune")
    from incbench.config import load_params
    from incbench.protocol import backbone_params

    resolve = getattr(spec.module, "resolve", None)  # None defaults -> a backbone's values
    for backbone in ("mf", "text") if resolve else ("mf",):
        params = spec.params(None)
        if resolve:
            params = resolve(params, backbone_params(load_params(REPO), backbone)[1])
        defaults = dataclasses.asdict(params)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial warns on out-of-range values
            values = space(optuna.trial.FixedTrial(defaults))
        assert set(values) <= set(defaults)
        spec.params(values)  # and every suggestion is a valid Params value
