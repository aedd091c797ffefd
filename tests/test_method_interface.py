"""The method interface for methods that change the loss: extra_loss, previous, batches,
pad_like; and the plugins built on it (lwf, ewc, sliding_window)."""

from __future__ import annotations

import copy

import pytest
import torch

from incbench import IncbenchError
from incbench.protocol import make_context, run_protocol
from tests.conftest import small_setup


def _ctx(root, name, overrides=None, t=1):
    setup, m0 = small_setup(root, name, overrides)
    model = copy.deepcopy(m0)
    model.grow(*setup.known(t))
    history = [p[p["part"] == "train"] for p in setup.windows.periods[:t]]
    return setup, make_context(setup, model, t, history, {}, m0)


def test_extra_loss_sees_every_step_s_batch_with_its_negatives(small_project):
    setup, ctx = _ctx(small_project, "fine_tune")
    seen = []

    def extra(model, batch):
        seen.append((len(batch.users), float(batch.labels.sum()), batch.rows.max().item()))
        return model.head.weight.square().sum() * 0.0

    result = ctx.fit(ctx.model, ctx.window, lr=0.01, epochs=1, extra_loss=extra)
    assert len(seen) == result.steps and sum(n for n, _, _ in seen) == result.examples
    assert sum(p for _, p, _ in seen) <= ctx.window["positive"].sum()  # negatives are label 0
    assert max(r for _, _, r in seen) < len(ctx.window)


def test_extra_loss_changes_training(small_project):
    setup, ctx = _ctx(small_project, "fine_tune")
    base = copy.deepcopy(ctx.model)
    ctx.fit(ctx.model, ctx.window, lr=0.05, epochs=2, groups=["head"])
    _, ctx2 = _ctx(small_project, "fine_tune")
    ctx2.fit(ctx2.model, ctx2.window, lr=0.05, epochs=2, groups=["head"],
             extra_loss=lambda m, b: 100.0 * m.head.weight.square().sum())  # fmt: skip
    plain = ctx.model.head.weight.norm()
    pulled = ctx2.model.head.weight.norm()
    assert pulled < plain and not torch.equal(base.head.weight, ctx2.model.head.weight)


def test_previous_is_a_frozen_copy_taken_before_the_first_fit(small_project):
    _, ctx = _ctx(small_project, "fine_tune")
    before = copy.deepcopy(ctx.model.state_dict())
    teacher = ctx.previous
    ctx.fit(ctx.model, ctx.window, lr=0.05, epochs=1)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])
    assert not any(p.requires_grad for p in teacher.parameters())
    _, late = _ctx(small_project, "fine_tune")
    late.fit(late.model, late.window, lr=0.05, epochs=1)
    with pytest.raises(IncbenchError, match="before the update's first ctx.fit"):
        late.previous  # noqa: B018


def test_batches_are_seeded_and_counted(small_project):
    _, a = _ctx(small_project, "fine_tune")
    _, b = _ctx(small_project, "fine_tune")
    first = [(x.users.clone(), x.items.clone()) for x in a.batches(a.model, a.window)]
    second = [(x.users.clone(), x.items.clone()) for x in b.batches(b.model, b.window)]
    assert len(first) == len(second) > 0
    assert all(torch.equal(u1, u2) and torch.equal(i1, i2)
               for (u1, i1), (u2, i2) in zip(first, second))  # fmt: skip
    assert a.fits[-1][2].examples == sum(len(u) for u, _ in first)  # examples, for the FLOP count
    assert a.m0 is not None


def test_pad_like_keeps_old_rows_and_zeros_new_ones():
    from incbench.method import UpdateContext

    old = torch.ones(3, 2)
    param = torch.nn.Parameter(torch.randn(5, 2))
    padded = UpdateContext.pad_like(old, param)
    assert padded.shape == (5, 2) and padded[:3].eq(1).all() and padded[3:].eq(0).all()


def test_teacher_passes_are_counted_in_flops(small_project):
    common = {"lr": 0.003, "epochs": 1}
    plain = run_protocol(*small_setup(small_project, "fine_tune", common)).windows
    lwf = run_protocol(*small_setup(small_project, "lwf", common)).windows
    assert (lwf["update_gflops"] > plain["update_gflops"]).all()


def test_ewc_holds_weights_that_mattered(small_project):
    def moved(lam):
        setup, m0 = small_setup(small_project, "ewc", {"lam": lam, "lr": 0.05, "epochs": 2})
        state, model = {}, copy.deepcopy(m0)
        history = [setup.windows.periods[0][setup.windows.periods[0]["part"] == "train"]]
        for t in (1, 2):
            model.grow(*setup.known(t))
            ctx = make_context(setup, model, t, history, state, m0)
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            model = setup.spec.update(ctx, setup.mparams)
            history.append(ctx.window)
        return sum((p - before[n]).square().sum() for n, p in model.named_parameters()
                   if p.shape == before[n].shape).item()  # fmt: skip

    assert moved(1e6) < 0.5 * moved(0.0)


def test_sliding_window_trains_on_the_newest_periods_only(small_project):
    def rows_trained(windows):
        setup, ctx = _ctx(small_project, "sliding_window", {"windows": windows}, t=2)
        sizes, fit = [], ctx.fit
        ctx.fit = lambda model, data, **kw: sizes.append(len(data)) or fit(model, data, **kw)
        setup.spec.update(ctx, setup.mparams)
        return sizes[0], ctx

    one, ctx = rows_trained(1)
    assert one == len(ctx.window)
    two, ctx = rows_trained(2)
    assert two == len(ctx.window) + len(ctx.periods[-1])
    every, ctx = rows_trained(10)
    assert every == len(ctx.window) + sum(len(p) for p in ctx.periods)  # = full_retrain's data


@pytest.mark.parametrize("name", ["fine_tune", "full_retrain", "replay", "lwf"])
def test_equal_budget_gives_every_update_the_same_step_budget(small_project, name):
    """protocol.step_budget: each update's fits together take at most that many optimiser
    steps (no early stopping); what was used is recorded per window."""
    import dataclasses

    setup, m0 = small_setup(small_project, name)
    setup = dataclasses.replace(setup, protocol=dataclasses.replace(setup.protocol, step_budget=3))
    result = run_protocol(setup, m0)
    windows = result.windows
    assert (windows["status"] == "ok").all()
    assert (windows["fit_steps"] <= 3).all() and (windows["fit_steps"] > 0).all()
    assert set(windows["fit_stopped"]) <= {"step_budget", "max_epochs"}
    assert result.cost["fit_steps"] <= 3


def test_a_second_fit_gets_only_what_the_first_left(small_project):
    import dataclasses

    setup, m0 = small_setup(small_project, "fine_tune")
    setup = dataclasses.replace(setup, protocol=dataclasses.replace(setup.protocol, step_budget=4))
    model = copy.deepcopy(m0)
    model.grow(*setup.windows.known(1))
    ctx = make_context(setup, model, 1, [ctx_base(setup)], {}, m0)
    first = ctx.fit(model, ctx.window, lr=0.01, epochs=50)
    second = ctx.fit(model, ctx.window, lr=0.01, epochs=50)
    third = ctx.fit(model, ctx.window, lr=0.01, epochs=50)
    assert (first.steps, second.steps, third.steps) == (4, 0, 0)
    assert third.stopped == "step_budget" and ctx.steps_used == 4


def ctx_base(setup):
    from incbench.protocol import base_train

    return base_train(setup.windows)


@pytest.mark.parametrize(("name", "off"), [("ewc", {"lam": 0.0}), ("lwf", {"distill": 0.0})])
def test_a_zero_weight_extra_loss_is_fine_tune_bit_for_bit(small_project, name, off):
    """EWC with λ = 0 and LwF with distillation weight 0 add an exact zero to every step:
    the same negatives, the same weights, the same summary as fine_tune."""
    a = run_protocol(*small_setup(small_project, "fine_tune"))
    b = run_protocol(*small_setup(small_project, name, off))
    assert a.summary["next_window"] == b.summary["next_window"]
    assert a.summary["retention"] == b.summary["retention"]


def test_previous_and_m0_are_never_modified_by_a_distilling_update(small_project):
    setup, m0 = small_setup(small_project, "lwf", {"distill": 5.0})
    model = copy.deepcopy(m0)
    model.grow(*setup.known(1))
    ctx = make_context(setup, model, 1, [ctx_base(setup)], {}, m0)
    before_m0 = {n: p.detach().clone() for n, p in m0.named_parameters()}
    teacher = ctx.previous
    before_teacher = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    setup.spec.update(ctx, setup.mparams)
    assert all(torch.equal(p, before_m0[n]) for n, p in m0.named_parameters())
    assert all(torch.equal(p, before_teacher[n]) for n, p in teacher.named_parameters())
    assert any(not torch.equal(p, before_teacher[n]) for n, p in ctx.model.named_parameters()
               if n in before_teacher)  # fmt: skip


L2_PULL = '''"""Fine-tune with an L2 pull toward M0: written with the documented context only."""

from dataclasses import dataclass

VERSION = "1"


@dataclass(frozen=True)
class Params:
    lr: float = 0.003
    epochs: int = 3
    pull: float = 10.0


def update(ctx, params):
    anchor = {n: p.detach() for n, p in ctx.m0.named_parameters()}

    def pull(model, batch):
        return params.pull * sum(((p - ctx.pad_like(anchor[n], p)) ** 2).sum()
                                 for n, p in model.named_parameters() if n in anchor)

    ctx.fit(ctx.model, ctx.window, lr=params.lr, epochs=params.epochs, extra_loss=pull)
    return ctx.model
'''


def test_a_newcomer_s_method_file_runs_through_the_loop_without_a_harness_edit(
    small_project, tmp_path
):
    """A method file in a fresh methods/ folder, using only ctx.m0, ctx.pad_like and
    ctx.fit(extra_loss=): registered by its file, run by the loop, measured like any other."""
    import dataclasses

    from incbench import method

    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "l2_pull.py").write_text(L2_PULL)
    spec = method.get("l2_pull", tmp_path)
    base, m0 = small_setup(small_project, "fine_tune")
    setup = dataclasses.replace(base, spec=spec, mparams=spec.params({}))
    pulled = run_protocol(setup, m0)
    assert pulled.summary["status"] == "ok" and pulled.summary["method"] == "l2_pull"
    assert pulled.summary["next_window"] != run_protocol(base, m0).summary["next_window"]

    def distance_to_m0(s) -> float:  # one update at window 1: the pull holds the weights
        model = copy.deepcopy(m0)
        model.grow(*s.known(1))
        ctx = make_context(s, model, 1, [ctx_base(s)], {}, m0)
        out = s.spec.update(ctx, s.mparams)
        named = dict(m0.named_parameters())
        return sum(float(((p.detach() - ctx.pad_like(named[n].detach(), p)) ** 2).sum())
                   for n, p in out.named_parameters() if n in named)  # fmt: skip

    assert distance_to_m0(setup) < distance_to_m0(base)
