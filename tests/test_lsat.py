"""LSAT (methods/lsat.py): two adapters, trained apart, served as their weighted sum."""

from __future__ import annotations

import torch

from incbench.protocol import base_train, make_context
from tests.conftest import small_setup


def _update(small_project, overrides):
    setup, m0 = small_setup(small_project, "lsat", overrides, backbone="text")
    model = m0
    model.grow(*setup.windows.known(1))
    ctx = make_context(setup, model, 1, [base_train(setup.windows)], {}, m0)
    return setup.spec.module, setup.spec.update(ctx, setup.mparams), ctx


def test_served_layer_is_the_weighted_sum_of_the_two_adapters(small_project):
    lsat, model, ctx = _update(small_project, {"weight": 0.3})
    layer = lsat._layers(model)[0]
    long, short = lsat.ADAPTERS
    assert sorted(layer.active_adapters) == sorted(lsat.ADAPTERS)
    x = torch.randn(3, layer.in_features)
    scale = layer.lora_alpha[long] / layer.r[long]
    with torch.no_grad():
        expected = (
            layer.base_layer(x)
            + 0.3 * scale * layer.lora_B[long](layer.lora_A[long](x))
            + 0.7 * scale * layer.lora_B[short](layer.lora_A[short](x))
        )
        assert torch.allclose(layer(x), expected, atol=1e-6)
    # both adapters trained (B moved off zero), one fit each; each fit encoded the catalogue
    # with its own encoder state (its adapter alone), and its FLOPs say so
    assert layer.lora_B[long].weight.abs().sum() > 0 and layer.lora_B[short].weight.abs().sum() > 0
    assert len(ctx.results) == 2 and all(r.setup_flops > 0 for r in ctx.results)


def test_weight_one_serves_the_long_term_adapter_alone(small_project):
    lsat, model, _ = _update(small_project, {"weight": 1.0})
    layer = lsat._layers(model)[0]
    x = torch.randn(2, layer.in_features)
    with torch.no_grad():
        only_long = layer.base_layer(x) + layer.scaling[lsat.ADAPTERS[0]] * layer.lora_B[
            lsat.ADAPTERS[0]
        ](layer.lora_A[lsat.ADAPTERS[0]](x))
        assert torch.allclose(layer(x), only_long, atol=1e-6)
