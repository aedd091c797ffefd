"""Which text recipe, chosen on past data only? A small grid around `backbones.text`.

A plain script (not collected by pytest): `python benchmarks/diagnose_text_recipe.py` (about
3 min on 2 cores; needs data/windows/ml-100k, i.e. `dvc repro split@ml-100k`). Nothing here
reads windows 1..N: each variant trains M0 on the *inner* base period that tuning uses
(`tuning.inner_windows`: the base's train rows replayed as base + `tuning.n_windows` windows)
at `tuning.seeds`, and is served frozen on those inner windows, printing per seed the means
over inner windows 2..n (the headline's windows, as in tuning's objective)

    epochs              epochs early stopping kept (the recipe's validation tail)
    auc / gauc          explicit feedback among observed rows (liked vs disliked)
    warm / cold users   NDCG@10 of users seen / not seen before the inner window

The README ("Why the text model looks like this") quotes the output. The script then applies
tuning's adoption rule (`tuning.adoption`, module docstring of incbench/tuning.py) on the
headline, warm-user NDCG@10: the best variant must beat the configured recipe by more than
twice the standard error of its paired gain, then win again on every `tuning.confirm_seeds`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_text import serve_frozen  # noqa: E402

from incbench.backbones import text  # noqa: E402
from incbench.config import from_mapping, load_params, protocol_from  # noqa: E402
from incbench.protocol import pretrain_model  # noqa: E402
from incbench.split import load_windows  # noqa: E402
from incbench.tuning import adoption, inner_windows, tuning_from  # noqa: E402

KEYS = ("auc", "gauc", "warm_user:ndcg@10", "cold_user:ndcg@10")
GRID = {
    "configured": {},
    "l2 0.003": {"l2": 0.003},
    "l2 0.03": {"l2": 0.03},
    "l2_content 0.003": {"l2_content": 0.003},
    "l2_content 0.03": {"l2_content": 0.03},
    "dim 64": {"dim": 64},
    "lr 0.003": {"lr": 0.003},
}


def main(root: Path) -> dict:
    params = load_params(root)
    cfg = tuning_from(params)
    windows = load_windows(root / "data" / "windows" / "ml-100k")
    inner, protocol = inner_windows(windows, protocol_from(params), cfg)
    base = from_mapping(text.Params, params["backbones"]["text"], "params.yaml backbones.text")

    def measure(change: dict, seeds) -> dict:
        runs = []
        for seed in seeds:
            model, fit = pretrain_model(inner, text, dataclasses.replace(base, **change),
                                        protocol, seed=seed)  # fmt: skip
            served = serve_frozen(model, inner, first=2)  # tuning's objective: windows 2..n
            runs.append({"epochs": fit.epochs, **{k: served[k] for k in KEYS}})
        return {k: [r[k] for r in runs] for k in runs[0]}

    out = {}
    for name, change in GRID.items():
        out[name] = measure(change, cfg.seeds)
        means = {k: round(float(np.mean(v)), 4) for k, v in out[name].items()}
        print(f"{name:18s} per seed {out[name]}  mean {means}", flush=True)
    head = "warm_user:ndcg@10"
    tried = {n: v[head] for n, v in out.items() if n != "configured"}
    best = max(tried, key=lambda n: np.mean(tried[n]))
    rule = adoption(out["configured"][head], tried[best], list(tried.values()))
    print(f"challenger {best!r}: margin {rule['margin']:.4f}, spread {rule['spread']:.4f}, "
          f"clears the bar: {rule['adopt']}")  # fmt: skip
    if rule["adopt"]:
        again = {n: measure(GRID[n], cfg.confirm_seeds)[head] for n in ("configured", best)}
        wins = [c > d for c, d in zip(again[best], again["configured"], strict=True)]
        rule["confirmed"] = all(wins)
        print(f"confirmation seeds {list(cfg.confirm_seeds)}: configured {again['configured']}, "
              f"{best} {again[best]} -> adopt: {rule['confirmed']}")  # fmt: skip
    out["adoption"] = {"challenger": best, **rule}
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
