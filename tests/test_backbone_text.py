"""The text backbone: local loading, groups, caching, budget cap, profiles, LoRA, cold start."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from incbench import method, train
from incbench.backbones import text
from incbench.config import Budget, ConfigError, Protocol
from incbench.protocol import Setup, base_train, make_context, pretrain_model
from incbench.split import load_windows

PARAMS = text.Params(max_tokens=12, dim=16, recent=5, pretrain_epochs=1, batch_size=512)
CAP = Budget(max_steps=2)  # encoder fits stop after 2 steps, as on the CPU budget


@pytest.fixture(scope="module")
def setup_m0(small_project):
    windows = load_windows(small_project / "data/windows/synthetic")
    m0, _ = pretrain_model(windows, text, PARAMS, Protocol(n_windows=3), seed=0)
    return windows, m0


def _update(root, windows, m0, name, overrides=None):
    spec = method.get(name, root)
    setup = Setup(windows, spec, spec.params(overrides), Protocol(n_windows=3), "text", text,
                  PARAMS, 0, budget=CAP)  # fmt: skip
    model = copy.deepcopy(m0)
    model.grow(*windows.known(1))
    ctx = make_context(setup, model, 1, [base_train(windows)], {})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = spec.update(ctx, setup.mparams)
    after = {
        n.replace(".base_layer", ""): p for n, p in out.named_parameters()
    }  # peft wraps layers
    changed = {n for n, p in after.items() if n in before and not torch.equal(before[n], p)}
    added = set(after) - set(before)
    return ctx, out, changed, added


def test_loads_from_the_packaged_folder_offline(setup_m0):
    path = text.resolve_model_path(text.DEFAULT_MODEL)
    tokenizer, encoder = text.load_encoder(path)  # a local path: no network involved
    assert encoder.config.num_hidden_layers == 6 and encoder.config.hidden_size == 384


def test_missing_and_malformed_model_folders(tmp_path):
    empty = tmp_path / "model"
    empty.mkdir()
    with pytest.raises(ConfigError, match="is not a model folder"):
        text.load_encoder(str(empty))
    (empty / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="could not load the text model"):
        text.load_encoder(str(empty))
    with pytest.raises(ConfigError, match="model folder .* does not exist"):
        text.load_encoder(str(tmp_path / "nowhere" / "model"))


def test_groups_in_order_and_cover_every_parameter_once(setup_m0):
    _, m0 = setup_m0
    names = [n for n, _ in m0.groups()]
    assert names == [
        "user_tower",
        "item_ids",
        "embeddings",
        *(f"layer.{k}" for k in range(6)),
        "projection",
        "head",
    ]
    ids = [id(p) for _, ps in m0.groups() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(m0.parameters()))


@pytest.mark.parametrize("groups", [["head"], ["projection", "head"], ["layer.5", "projection", "head"],
                                    ["layer.3", "layer.4", "layer.5", "projection", "head"], None])  # fmt: skip
def test_cached_and_uncached_item_vectors_agree(setup_m0, groups):
    windows, m0 = setup_m0
    model = copy.deepcopy(m0)
    items = torch.arange(model.n_catalogue)
    with torch.no_grad():
        reference = model.encode(items)
    chosen = {id(p) for p in train.trainable_parameters(model, groups)}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    model.prepare_training(base_train(windows))
    with torch.no_grad():
        cached = model._train_pooled(items)
    model.finish_training()
    assert torch.allclose(cached, reference, atol=1e-5)
    with torch.no_grad():  # the serving path (pooled catalogue cache) computes the same
        assert torch.allclose(model.pooled(), reference, atol=1e-5)


@pytest.mark.parametrize("groups", [["layer.5", "projection", "head"], None])
def test_length_sorted_chunks_keep_the_callers_item_order(setup_m0, groups):
    """Many small chunks (item_batch 7), items permuted and repeated: the encoded, the cached
    (hidden states below the first trainable layer) and the catalogue paths all return each
    item's own vector, in the caller's order, and gradients reach the trained layers."""
    import dataclasses

    windows, m0 = setup_m0
    model = copy.deepcopy(m0)
    model.params = dataclasses.replace(model.params, item_batch=7)
    gen = torch.Generator().manual_seed(0)
    items = torch.randperm(model.n_catalogue, generator=gen)[:40].repeat(2)
    with torch.no_grad():
        reference = torch.cat([model.encode(items[i : i + 1]) for i in range(len(items))])
        assert torch.allclose(model._encode_chunked(items), reference, atol=1e-5)
        model._pooled = None
        assert torch.allclose(model.pooled()[items], reference, atol=1e-5)
    chosen = {id(p) for p in train.trainable_parameters(model, groups)}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    model.prepare_training(base_train(windows))
    cached = model._train_pooled(items)
    assert torch.allclose(cached.detach(), reference, atol=1e-5)
    cached.sum().backward()
    top = model.layers[-1]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in top.parameters())
    model.finish_training()


def test_frozen_encoder_is_encoded_once_and_a_changed_one_again(setup_m0):
    _, m0 = setup_m0
    model = copy.deepcopy(m0)
    model.invalidate()
    first = model.pooled()
    model.invalidate()  # nothing changed: the cache stays (frozen, head_only: no re-encoding)
    assert model.pooled() is first
    with torch.no_grad():
        weight = model.layers[5].intermediate.dense.weight  # e.g. a merged adapter, outside fit
        weight.add_(0.05 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    model.invalidate()
    again = model.pooled()
    assert again is not first and not torch.allclose(again, first)
    with torch.no_grad():
        assert torch.allclose(again, model.encode(torch.arange(model.n_catalogue)), atol=1e-5)


def test_head_only_and_partial_unfreeze_leave_the_rest_bit_identical(small_project, setup_m0):
    windows, m0 = setup_m0
    ctx, _, changed, _ = _update(small_project, windows, m0, "head_only")
    assert {n.split(".")[0] for n in changed} == {"head"}
    ctx, _, changed, _ = _update(small_project, windows, m0, "partial_unfreeze", {"k": 1})
    assert ctx.trained == {"layer.5", "projection", "head"}  # k counts transformer layers
    assert {
        n for n in changed if not n.startswith(("encoder.encoder.layer.5.", "projection.", "head."))
    } == set()
    assert any(n.startswith("encoder.encoder.layer.5.") for n in changed)


def test_lora_changes_only_adapters_and_head(small_project, setup_m0):
    windows, m0 = setup_m0
    ctx, out, changed, added = _update(small_project, windows, m0, "lora", {"rank": 4})
    assert ctx.trained == {"lora", "head"}
    assert added and all("lora_" in n for n in added)
    assert changed == {"head.weight", "head.bias"}  # every pre-existing encoder weight untouched
    lora_b = [p for n, p in out.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b), "the adapters trained"


def test_lora_is_not_applicable_on_mf(small_project):
    from tests.conftest import small_setup

    setup, m0 = small_setup(small_project, "lora")
    from incbench.protocol import run_protocol

    result = run_protocol(setup, m0)
    assert (
        result.summary["status"] == "not_applicable" and "transformer" in result.summary["reason"]
    )


def test_cold_items_are_scored_from_their_text(setup_m0):
    windows, m0 = setup_m0
    model = copy.deepcopy(m0)
    n_old, n_new = windows.known(0)[1], windows.known(1)[1]
    assert n_new > n_old
    model.grow(*windows.known(1))
    scores = model.score_all(torch.tensor([0]), n_new)[0]
    cold = scores[n_old:n_new]
    assert len(cold) > 1 and cold.std() > 0  # unlike mf's single cold score


def test_profiles_keep_the_last_items_in_time_order(setup_m0):
    _, m0 = setup_m0
    model = copy.deepcopy(m0)
    model.profile.fill_(-1)
    model.observe(pd.DataFrame({"user_idx": [0] * 7 + [1], "item_idx": [1, 2, 3, 4, 5, 6, 7, 9],
                                "timestamp": [1, 2, 3, 4, 5, 6, 7, 1]}))  # fmt: skip
    assert model.profile[0].tolist() == [3, 4, 5, 6, 7]
    assert model.profile[1].tolist() == [9, -1, -1, -1, -1]
    model.observe(pd.DataFrame({"user_idx": [1, 0], "item_idx": [8, 11], "timestamp": [9, 9]}))
    assert model.profile[0].tolist() == [4, 5, 6, 7, 11] and model.profile[1].tolist()[:2] == [9, 8]
    assert model.profile_ts[0].tolist() == [4, 5, 6, 7, 9]


def test_training_profiles_hold_only_items_strictly_before_the_example():
    held = np.array([[7, 8, -1], [-1, -1, -1]])
    held_ts = np.array([[1, 5, 0], [0, 0, 0]])
    users, items = np.array([0, 0, 0, 1, 1]), np.array([1, 2, 3, 4, 5])
    ts = np.array([3, 6, 6, 2, 4])
    prof = text.profiles_before(users, items, ts, held, held_ts, recent=3)
    as_sets = [set(r[r >= 0].tolist()) for r in prof]
    assert as_sets == [
        {7},  # ts 3: held item 8 (ts 5) is later, so it is not in the profile
        {7, 8, 1},  # ts 6: every earlier item, not item 3 of the same second
        {7, 8, 1},
        set(),  # the user's first row sees an empty profile
        {4},
    ]


def test_a_cold_user_is_ranked_by_the_item_biases(setup_m0):
    _, m0 = setup_m0
    model = copy.deepcopy(m0)
    model.grow(model.n_users + 1, model.n_items)
    cold = torch.tensor([model.n_users - 1])
    with torch.no_grad():
        scores = model.score_all(cold, model.n_items)[0]
        index = model.item_index(model.n_items)
    # u = 0: the same ranking for every cold user, by a_i + beta_i (the model's popularity prior)
    assert torch.allclose(scores - scores[0], index[:, -1] - index[0, -1], atol=1e-5)


def test_the_budget_cap_binds_only_fits_that_train_the_encoder(setup_m0):
    windows, m0 = setup_m0
    rows = base_train(windows)
    common = {"n_items": windows.known(0)[1], "n_negatives": 2, "lr": 0.01, "batch_size": 256,
              "seed": 0, "max_steps": 2, "val_fraction": 0.1, "patience": 1}  # fmt: skip
    recipe = train.fit(copy.deepcopy(m0), rows, epochs=3, groups=list(PARAMS.pretrain_groups),
                       **common)  # fmt: skip
    assert recipe.stopped in ("early_stop", "max_epochs") and recipe.steps > 2
    assert recipe.epochs >= 1 and recipe.first_loss > 0
    encoder = train.fit(copy.deepcopy(m0), rows, epochs=3, groups=["layer.5", "head"], **common)
    assert encoder.stopped == "max_steps" and encoder.steps == 2


def test_lora_through_the_loop_counts_only_adapters_and_head(small_project, setup_m0):
    from incbench.protocol import run_protocol

    windows, m0 = setup_m0
    spec = method.get("lora", small_project)
    setup = Setup(windows, spec, spec.params({"rank": 4}), Protocol(n_windows=3), "text", text,
                  PARAMS, 0, budget=CAP)  # fmt: skip
    result = run_protocol(setup, m0)
    rows = result.windows
    assert result.summary["status"] == "ok"
    assert (rows["changed_params"] <= rows["trainable_params"]).all()
    assert (rows["trainable_params"] == rows["trainable_params"].iloc[0]).all()


TRAIN_ONCE = """
import hashlib, pathlib, sys
from incbench import method
from incbench.backbones import text
from incbench.config import Budget, Protocol
from incbench.protocol import Setup, base_train, make_context, pretrain_model
from incbench.split import load_windows

root = pathlib.Path(sys.argv[1])
params = text.Params(max_tokens=12, dim=16, recent=5, pretrain_epochs=2, batch_size=512)
windows = load_windows(root / "data/windows/synthetic")
m0, _ = pretrain_model(windows, text, params, Protocol(n_windows=3), seed=0)
spec = method.get("fine_tune", root)  # every group, the encoder included
setup = Setup(windows, spec, spec.params({}), Protocol(n_windows=3), "text", text, params, 0,
              budget=Budget(max_steps=2))
m0.grow(*windows.known(1))
ctx = make_context(setup, m0, 1, [base_train(windows)], {})
model = spec.update(ctx, setup.mparams)
digest = hashlib.sha256()
for name, value in sorted(model.state_dict().items()):
    digest.update(name.encode() + value.detach().contiguous().numpy().tobytes())
print(digest.hexdigest(), ctx.results[-1].steps, ctx.results[-1].stopped)
"""


def test_encoder_training_is_bit_identical_across_processes(small_project):
    """Same params and seed, two fresh processes: the same bytes after an encoder update."""
    import subprocess
    import sys

    outs = [
        subprocess.run(
            [sys.executable, "-c", TRAIN_ONCE, str(small_project)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()  # fmt: skip
        for _ in range(2)
    ]
    assert outs[0] == outs[1]
    assert outs[0][1:] == ["2", "max_steps"]  # the encoder trained, under the cap


def test_pretrained_encoder_layers_train_at_a_scaled_learning_rate(setup_m0):
    _, m0 = setup_m0
    opt = train._adam(m0, ["layer.5", "projection", "head"], lr=0.003, weight_decay=0.0)
    rates = [g["lr"] for g in opt.param_groups]
    assert rates == pytest.approx([0.003 * PARAMS.encoder_lr_scale, 0.003, 0.003])
    assert m0.lr_scale("lora") == 1.0 and m0.lr_scale("user_tower") == 1.0


def test_id_dropout_hides_item_ids_in_training_steps_only(setup_m0):
    """id_dropout: a seeded share of training examples scores an item from its text alone;
    validation passes (no grad) and serving always see the ID part."""
    import dataclasses

    windows, m0 = setup_m0
    model = copy.deepcopy(m0)
    model.params = dataclasses.replace(model.params, id_dropout=0.5)
    with torch.no_grad():  # give the item ID parts weight, so hiding them shows
        model.item_emb.weight.normal_(0, 1.0)
    rows = base_train(windows).iloc[:400].reset_index(drop=True)
    users = torch.tensor(rows["user_idx"].values)
    items = torch.tensor(rows["item_idx"].values)
    positions = torch.arange(len(rows))
    model.prepare_training(rows)
    try:
        with torch.no_grad():
            full = model.score(users, items, rows=positions)
        dropped = model.score(users, items, rows=positions).detach()
    finally:
        model.finish_training()
    hidden = (dropped != full).float().mean().item()
    assert 0.35 < hidden < 0.65
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.score(users, items), model.score(users, items))


def test_loading_and_tokenising_stay_outside_the_timed_update(small_project, monkeypatch):
    """full_retrain builds a fresh text model each window; the catalogue's tokenisation (and
    the encoder's load) happen before the loop, never inside a Meter block."""
    from incbench import meter, protocol
    from tests.conftest import small_setup

    setup, m0 = small_setup(small_project, "full_retrain", backbone="text")
    text._tokenised.cache_clear()
    inside, calls = {"now": False}, []
    real_enter, real_exit, real_tok = meter.Meter.__enter__, meter.Meter.__exit__, text._tokenised

    def enter(self):
        inside["now"] = True
        return real_enter(self)

    def leave(self, *exc):
        inside["now"] = False
        return real_exit(self, *exc)

    def tokenised(*args):
        calls.append((inside["now"], real_tok.cache_info().currsize))
        return real_tok(*args)

    monkeypatch.setattr(meter.Meter, "__enter__", enter)
    monkeypatch.setattr(meter.Meter, "__exit__", leave)
    monkeypatch.setattr(text, "_tokenised", tokenised)
    result = protocol.run_protocol(setup, m0)
    assert result.summary["status"] == "ok"
    misses = [c for c in calls if c[0]]
    assert calls and calls[0] == (False, 0)  # the first (uncached) tokenisation: before the loop
    assert all(size > 0 for _, size in misses)  # inside updates: cache hits only
