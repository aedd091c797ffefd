"""The backbone contract (incbench/backbones/base.py), run on every registered backbone: a new
backbone file is held to it the moment it exists."""

from __future__ import annotations

import copy

import pytest
import torch

from incbench import backbones, train
from incbench.backbones.base import Backbone, Recipe
from incbench.split import load_windows

SMALL = {"mf": {"dim": 8}, "text": {"dim": 8, "max_tokens": 8, "recent": 4}}


@pytest.fixture(scope="module", params=backbones.names())
def built(request, small_project):
    name = request.param
    module = backbones.get(name)
    windows = load_windows(small_project / "data/windows/synthetic")
    params = module.Params(**SMALL.get(name, {}))
    n_users, n_items = windows.known(0)
    model = module.build(params, n_users, n_items, side=windows.items, seed=0)
    return name, module, params, windows, model.eval()


def test_declares_the_contract(built):
    _, module, params, _, model = built
    assert isinstance(model, Backbone) and isinstance(params, Recipe)
    assert dataclasses_frozen(module.Params)


def dataclasses_frozen(cls) -> bool:
    return cls.__dataclass_params__.frozen


def test_groups_cover_every_parameter_once_head_last(built):
    _, _, _, _, model = built
    names = [n for n, _ in model.groups()]
    ids = [id(p) for _, ps in model.groups() for p in ps]
    assert names[-1] == "head" and len(names) == len(set(names))
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_grow_keeps_old_rows_and_scores(built):
    _, _, _, windows, model = built
    model = copy.deepcopy(model)
    users, items = torch.arange(5), torch.arange(5)
    with torch.no_grad():
        before = model.score(users, items).clone()
        model.grow(*windows.known(2))
        after = model.score(users, items)
    assert torch.allclose(before, after, atol=1e-6)


def test_score_score_index_and_score_all_agree(built):
    _, _, _, windows, model = built
    n_items = windows.known(0)[1]
    users = torch.arange(4)
    with torch.no_grad():
        full = model.score_all(users, n_items)
        via_index = model.score_index(users, model.item_index(n_items))
        pairs = model.score(users.repeat_interleave(n_items), torch.arange(n_items).repeat(4))
    assert full.shape == (4, n_items)
    assert torch.allclose(full, via_index, atol=1e-5)
    assert torch.allclose(full.reshape(-1), pairs, atol=1e-4)


def test_hooks_are_safe_and_a_fit_trains_only_its_groups(built):
    _, _, params, windows, model = built
    model = copy.deepcopy(model)
    rows = windows.periods[0]
    rows = rows[rows["part"] == "train"].reset_index(drop=True)
    model.invalidate()
    model.observe(rows.iloc[:0])
    model.observe(rows.iloc[:50])
    model.finish_training()  # without a prepare: nothing to drop, no error
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    head = train.trainable_parameters(model, ["head"])
    result = train.fit(model, rows, n_items=windows.known(0)[1], n_negatives=1, lr=0.01,
                       epochs=1, batch_size=256, seed=0, groups=["head"])  # fmt: skip
    assert result.steps > 0
    changed = {n for n, p in model.named_parameters() if not torch.equal(frozen[n], p)}
    head_names = {n for n, p in model.named_parameters() if any(p is h for h in head)}
    assert changed and changed <= head_names
    fresh = copy.deepcopy(model)
    fresh.adopt_features(model)
    assert isinstance(model.config(), dict) and model.config()["n_users"] >= 1
    # served_after: inside, scores as after observing the rows; afterwards, exactly as before
    users, items = torch.arange(4), torch.arange(4)
    with torch.no_grad():
        before = model.score(users, items)
        with model.served_after(rows.iloc[50:120]):
            inside = model.score(users, items)
        after = model.score(users, items)
        observed = copy.deepcopy(model)
        observed.observe(rows.iloc[50:120])
        assert torch.equal(before, after) and torch.equal(inside, observed.score(users, items))


def test_penalty_is_none_or_a_scalar(built):
    _, _, _, _, model = built
    value = model.penalty(torch.arange(3), torch.arange(3))
    assert value is None or (isinstance(value, torch.Tensor) and value.dim() == 0)


def test_required_methods_raise_until_implemented():
    with pytest.raises(NotImplementedError):
        Backbone().groups()
