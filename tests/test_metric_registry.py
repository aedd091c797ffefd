"""The metric registry (incbench/metric_registry.py): every number a run reports is registered."""

from __future__ import annotations

import pytest

from incbench import metric_registry as registry
from incbench.protocol import run_protocol
from tests.conftest import small_setup


def test_every_per_window_column_of_a_run_is_registered_or_bookkeeping(small_project):
    result = run_protocol(*small_setup(small_project, "fine_tune"))
    bookkeeping = {"window", "status", "threshold", "warm_rows", "peak_mem_kind"}
    unknown = [c for c in result.windows.columns
               if c not in bookkeeping and not c.startswith("fit_") and not registry.known(c)]  # fmt: skip
    assert unknown == []
    # the summary's headline holds the quality families only, costs go to cost.json
    assert result.summary["next_window"]
    assert all(registry.get(k).family in ("ranking", "classification", "count")
               for k in result.summary["next_window"])  # fmt: skip
    assert set(result.cost) >= {"update_wall_s", "fit_steps"}


def test_labels_slices_and_unknown_keys():
    assert registry.label(registry.HEADLINE) == "NDCG@10"
    assert registry.label("cold_user:ndcg@10") == "NDCG@10 cold users"
    assert registry.get("warm_user:cold_item:ndcg@10").higher_is_better is True
    assert registry.get("logloss").higher_is_better is False
    assert registry.column("update_wall_s", digits=2) == ("update_wall_s", "Update s", 2)
    with pytest.raises(KeyError, match="metric_registry.py"):
        registry.get("ndcg@11")
    with pytest.raises(KeyError):
        registry.get("lukewarm_user:ndcg@10")
