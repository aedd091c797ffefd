"""How often does the tuning adoption rule adopt noise? A null simulation of incbench/tuning.py.

A plain script (not collected by pytest): `python benchmarks/simulate_adoption.py`.
Null: no setting is truly better than the defaults. Each setting's per-seed value is the seed's
shared level (its inner M0) plus independent noise; the study has `trials` trials (the
defaults and trials - 1 tuned ones) over `seeds` seeds. It counts how often the best tuned
trial passes `tuning.adoption` (the bar alone) and how often it also wins on every fresh
confirmation seed (the rule as shipped). The README and tuning.py quote its output.
"""

from __future__ import annotations

import numpy as np

from incbench.tuning import adoption


def simulate(studies: int = 4000, trials: int = 10, seeds: int = 2, confirm: int = 2,
             seed: int = 0) -> tuple[float, float]:  # fmt: skip
    rng = np.random.default_rng(seed)
    bar = shipped = 0
    for _ in range(studies):
        level = rng.normal(0, 1.0, seeds)  # each seed's inner M0: cancels in paired gains
        values = level + rng.normal(0, 0.1, (trials, seeds))  # row 0: the defaults
        tuned = values[1:]
        best = int(np.argmax(tuned.mean(axis=1)))
        rule = adoption(list(values[0]), list(tuned[best]), [list(r) for r in tuned])
        if rule["adopt"]:
            bar += 1
            fresh = rng.normal(0, 0.1, (2, confirm))  # defaults and challenger on fresh seeds
            shipped += bool((fresh[1] > fresh[0]).all())
    return bar / studies, shipped / studies


if __name__ == "__main__":
    for s in (2, 3):
        alone, with_retest = simulate(seeds=s)
        print(
            f"null, 10 trials, {s} seeds: the bar alone adopts noise in {alone:.1%} of "
            f"studies; with the re-test on 2 fresh seeds, {with_retest:.1%}"
        )
