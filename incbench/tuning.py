"""Fair hyperparameter tuning with optuna, on past data only (`tune@<dataset>-<backbone>-<method>`).

Every method is tuned the same way, and never sees windows 1..N:

    base period (train part only) ──► re-split with the same rules into
    │◄─ inner base (pretrain inner M0) ─►│◄ val 1 ►│◄ val 2 ►│◄ val 3 ►│      then window 1 …
    objective: mean next-window NDCG@10 over val 2..n (val 1 scores the shared inner M0),
               averaged over the tuning seeds

- Search spaces live in the method files: `def search_space(trial) -> dict` (optuna's API).
  The method's defaults are enqueued as the first trial (a method whose defaults are None
  placeholders, e.g. full_retrain's "the backbone's recipe", defines
  `resolve(params, backbone_params) -> Params` with the concrete values a run uses). Values fixed
  in params.yaml (`methods.<name>`) are never tuned: the trial handed to `search_space` answers
  a suggestion for a fixed name with the fixed value and never asks optuna, so fixed names are
  never sampled and never appear among a trial's params or in trials.csv. A method without
  `search_space` has nothing to tune.
- Same budget for all: `tuning.trials` completed trials each (the defaults included), a TPE
  sampler seeded by a stable hash of (dataset, backbone, method) whose random start-up is sized
  to the budget: n_startup_trials = max(1, trials // 3), the defaults counting as one.
- Seeds: every trial runs the inner protocol once per seed in `tuning.seeds` (at least two);
  seed s uses its own inner M0 (pretrained once per study, like the grid's M0 per run seed),
  so the same s gives the same M0, negatives and initialisations to every trial. The trial's
  value is the mean over seeds; the per-seed values are its user attrs `value_seed<s>` and
  columns of trials.csv.
- Adoption rule. Trial 0 is the defaults, with per-seed values d_s over the S seeds; every
  other completed trial k has values v_ks and paired gains g_ks = v_ks - d_s (same seed: same
  inner M0, negatives and initialisations). The challenger c is the trial with the best mean.
      margin = mean_s g_cs
      sd     = max( sd_s(g_cs),  sqrt(median_k var_s(g_ks)) )   (sample sd/var, ddof = 1;
                                                                 k over all non-default trials)
      spread = 2 * sd / sqrt(S)                                 (twice the standard error)
  The challenger replaces the defaults only if margin > spread; otherwise the runs use the
  defaults. The sd is the challenger's own seed-to-seed sd of its gain, floored by the typical
  (median) one over every tuned trial: with two seeds the challenger's own sd rests on one
  degree of freedom and is smallest exactly when the challenger was lucky; the median over the
  K trials is stable and ignores the few wild settings whose gains swing most. Selecting the
  best of K noisy trials inflates its margin (about sd/sqrt(S) times the expected maximum of K
  standard normals, 1.5 for K = 9), and with two seeds the bar alone was measured (a simulated
  null: no setting truly better) to adopt noise in about 27% of studies. So a challenger that
  clears the bar is re-tested against the defaults on fresh seeds (`tuning.confirm_seeds`, none
  of `tuning.seeds`) and adopted only if it wins on every one of them (null: ~6%). The settings'
  own seed std is recorded but not used: each seed has its own inner M0, so it mostly measures
  how good that M0 is, which pairing cancels (ml-100k/mf, fine_tune: the defaults score 0.284
  and 0.227 on the two seeds, while the gain of a tuned setting over them has a typical
  seed-to-seed sd of 0.005). best.json records which won (`adopted`: "tuned" | "defaults"),
  `margin`, `spread`, the per-seed values of both settings, and `params`: what the runs use.
- Studies live in optuna journal files, so an interrupted study resumes where it stopped;
  the file name carries a hash of everything that defines the study (method file, fixed
  params, protocol, backbone params, split, seeds, objective, the harness's code), so a
  changed setup starts anew (and the old setup's journal is removed): no trial value measured
  by other code is ever reused.
- Output `results/tuning/<dataset>-<backbone>-<method>/`: `best.json` (read by the run stages
  through `paths.tuned_params`), `trials.csv`, the journal.
- Shared storage (`incbench tune … --storage postgresql://…`, optional): several workers run
  trials of one study in parallel. The study lives in that database (no journal file), each
  running trial beats a heartbeat every HEARTBEAT_S seconds, and only RUNNING trials whose
  heartbeat is older than GRACE_S are failed (by optuna, before each trial) and re-queued with
  their params (at most MAX_RETRY times): other workers' live trials are never touched. Which
  worker samples which trial depends on timing, so such a study is not reproducible: best.json
  says so (`reproducible: false`) and the tuning table labels it. Without `--storage` nothing
  changes: one sequential study in its journal file, reproducible and resumable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from incbench import checkpoint, io, method, metric_registry, train
from incbench.config import (
    ConfigError,
    Protocol,
    budget_from,
    from_mapping,
    load_params,
    protocol_from,
)
from incbench.data import Tables
from incbench.paths import inner_models_dir, tuning_dir
from incbench.split import Windows, load_windows, split

HEARTBEAT_S = 60  # shared storage: a running trial's heartbeat interval
GRACE_S = 180  # shared storage: a RUNNING trial silent this long is stale (its worker died)
MAX_RETRY = 3  # shared storage: a stale trial's params are queued again at most this often
NON_REPRODUCIBLE = "non-reproducible: parallel trials on shared storage"

OBJECTIVE = "next-window warm-user NDCG@10 of inner windows 2..n, mean over tuning seeds"
RULE = (
    "best tuned trial replaces the defaults iff its mean per-seed gain over them > "
    "2 x max(its own sd of the gain, the median sd over all tuned trials) / sqrt(seeds), "
    "and it also beats the defaults on every fresh confirmation seed (the best of K trials is "
    "an optimistic estimate: without the re-test, noise was adopted in ~27% of null studies)"
)


@dataclasses.dataclass(frozen=True)
class TuningConfig:
    trials: int = 0  # completed trials per method, defaults included; 0 = defaults, no tuning
    base_fraction: float = 0.5  # share of the base period's train rows for the inner M0
    n_windows: int = 3  # validation windows cut from the rest of the base period (>= 2)
    seeds: tuple[int, ...] = (0, 1)  # run seeds of every trial (>= 2: the seed spread)
    confirm_seeds: tuple[int, ...] = (2, 3)  # fresh seeds a challenger must also win on
    max_failed: int = 10  # failed (diverged) trials tolerated before giving up

    def __post_init__(self):
        if self.trials < 0 or self.n_windows < 2 or not 0 < self.base_fraction < 1:
            raise ConfigError("tuning: trials >= 0, n_windows >= 2, 0 < base_fraction < 1")
        if len(set(self.seeds)) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("tuning.seeds: at least two distinct seeds (the seed spread)")
        if set(self.confirm_seeds) & set(self.seeds):
            raise ConfigError("tuning.confirm_seeds must be fresh: none of tuning.seeds")

    @property
    def n_startup_trials(self) -> int:
        """TPE's random start-up, sized to the budget (the enqueued defaults count as one)."""
        return max(1, self.trials // 3)


def tuning_from(params: dict[str, Any]) -> TuningConfig:
    return from_mapping(TuningConfig, params.get("tuning"), "tuning")


def inner_windows(
    windows: Windows, protocol: Protocol, cfg: TuningConfig
) -> tuple[Windows, Protocol]:
    """The protocol replayed inside the base period's train part: nothing from windows 1..N."""
    base = windows.periods[0]
    rows = base.loc[base["part"] == "train", ["user", "item", "rating", "timestamp"]]
    side = windows.items.drop(columns=["item_idx"])
    users = windows.users.drop(columns=["user_idx"])
    # the base's train rows are samples already; fixed-count windows become count windows
    mode = "count" if protocol.window_mode == "fixed" else protocol.window_mode
    inner = dataclasses.replace(protocol, base_fraction=cfg.base_fraction, n_windows=cfg.n_windows,
                                window_mode=mode, window_rows=0, base_rows=0, min_history=0)  # fmt: skip
    frames, items, user_table, entries, _ = split(
        Tables(rows.reset_index(drop=True), side, users), inner
    )
    manifest = {"dataset": {**windows.manifest["dataset"], "tuning": True}, "windows": entries,
                "sha256": {}}  # fmt: skip
    return Windows(manifest, frames, items, user_table), inner


def study_key(
    spec, fixed: dict, inner: Protocol, bparams, windows: Windows, cfg: TuningConfig,
    max_steps: int = 0,
) -> str:  # fmt: skip
    ident = {"max_steps": max_steps,
        "method_file": io.sha256_file(spec.path), "fixed": fixed, "protocol": dataclasses.asdict(inner),
        "backbone": dataclasses.asdict(bparams), "split": windows.manifest.get("sha256", {}),
        "seeds": list(cfg.seeds), "objective": OBJECTIVE,
        "code": _code_digest(),  # changed harness code: its trials' values are not this code's
    }  # fmt: skip
    return hashlib.sha256(io.dumps_json(ident).encode()).hexdigest()[:12]


class FixedAware:
    """The trial `search_space` sees: a fixed name gets its fixed value, optuna is never asked."""

    def __init__(self, trial, fixed: dict[str, Any]):
        self._trial, self._fixed = trial, fixed

    def __getattr__(self, name: str):
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args, **kwargs):
            return self._fixed[param] if param in self._fixed else attr(param, *args, **kwargs)

        return suggest


class SkipLastUpdate:
    """The method as a trial runs it: the update after the last inner window is skipped.

    A lean trial evaluates M_(t-1) on windows 1..n; M_n, the update after window n, is never
    evaluated (there is no window n+1 inside the base period), so training it would only cost
    time: for full_retrain, the costliest trial, it is the largest fit of the trial.
    """

    def __init__(self, module, last: int):
        self._module, self._last = module, last

    def __getattr__(self, name: str):
        return getattr(self._module, name)

    def update(self, ctx, params):
        return ctx.model if ctx.t >= self._last else self._module.update(ctx, params)


OBJECTIVE_METRIC = metric_registry.HEADLINE  # the tables' headline metric


def inner_value(table: pd.DataFrame) -> float | None:
    """The objective of one seed: mean next-window warm-user NDCG@10, inner windows 2..n."""
    if not len(table) or OBJECTIVE_METRIC not in table:
        return None
    later = table[(table["status"] == "ok") & (table["window"] >= 2)][OBJECTIVE_METRIC].dropna()
    return float(later.mean()) if len(later) else None


def adoption(
    defaults: list[float], challenger: list[float], tuned: list[list[float]] | None = None
) -> dict[str, Any]:
    """The adoption rule (module docstring) on per-seed values, seeds in the same order.

    `tuned`: the per-seed values of every completed non-default trial (challenger included);
    they only set the floor of the gain's sd (the median over them).
    """
    n = len(defaults)
    rows = [challenger, *(tuned or [])]
    if n < 2 or any(len(r) != n for r in rows):
        raise ValueError("adoption needs paired values of at least two seeds")
    gains = [[v - d for v, d in zip(r, defaults, strict=True)] for r in rows]
    margin = statistics.fmean(gains[0])
    sd_own = statistics.stdev(gains[0])
    floor = gains[1:] or gains[:1]
    sd_median = math.sqrt(statistics.median(statistics.variance(g) for g in floor))
    spread = 2 * max(sd_own, sd_median) / math.sqrt(n)
    return {"adopt": margin > spread, "margin": margin, "spread": spread, "sd_gain": sd_own,
            "sd_gain_median": sd_median, "median_over_trials": len(floor),
            "std_defaults": statistics.stdev(defaults),
            "std_challenger": statistics.stdev(challenger)}  # fmt: skip


def inner_key(inner: Protocol, bparams, windows: Windows, seed: int, max_steps: int,
              device: str = "cpu") -> str:  # fmt: skip
    """What an inner M0 depends on: a stored one is used only when its key matches — the
    inner protocol, recipe, split, seed, cap, device and the harness code that trains it."""
    ident = {"protocol": dataclasses.asdict(inner), "backbone": dataclasses.asdict(bparams),
             "split": windows.manifest.get("sha256", {}), "seed": seed, "max_steps": max_steps,
             "device": device, "code": _code_digest()}  # fmt: skip
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _code_digest() -> str:
    """SHA-256 over the harness's own source files (incbench/**/*.py)."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _trials(params: dict, backbone: str) -> int:
    budget = budget_from(params, backbone)
    return tuning_from(params).trials if budget.tuning_trials is None else budget.tuning_trials


def pretrain_inner(dataset: str, backbone: str, root: Path) -> Path:
    """`incbench pretrain-inner`: the inner M0 of every tuning seed, trained once per
    (dataset, backbone) and shared by all methods' studies (each would otherwise train its
    own: the same model, most of a short study's time). Nothing when tuning is off."""
    from incbench.protocol import backbone_params, pretrain_model, resolve_device

    params = load_params(root)
    cfg, protocol = tuning_from(params), protocol_from(params)
    budget = budget_from(params, backbone)
    out = inner_models_dir(root, dataset, backbone)
    with io.atomic_dir(out) as build:
        if _trials(params, backbone) == 0:
            io.write_json(build / "SKIPPED.json", {"reason": "no tuning trials in the budget"})
            return out
        device = resolve_device(params.get("device", "cpu"))
        bmodule, bparams = backbone_params(params, backbone)
        windows = load_windows(root / "data" / "windows" / dataset)
        inner, inner_protocol = inner_windows(windows, protocol, cfg)
        for seed in cfg.seeds:
            m0, fit = pretrain_model(inner, bmodule, bparams, inner_protocol, seed, device, budget)
            checkpoint.save_model(m0, backbone, build / f"seed-{seed}")
            key = inner_key(inner_protocol, bparams, windows, seed, budget.max_steps, device)
            io.write_json(build / f"seed-{seed}.json", {"key": key, **dataclasses.asdict(fit)})
    return out


def _stored_inner_m0(folder: Path, key: str, device: str):
    """The stored inner M0 if its key matches (else None: the study trains its own)."""
    meta = folder.parent / f"{folder.name}.json"
    if not meta.exists() or json.loads(meta.read_text()).get("key") != key:
        return None
    return checkpoint.load_model(folder, device)[1]


def shared_storage(url: str):
    """An optuna RDB storage for parallel trials: heartbeats, stale trials failed and retried."""
    import warnings

    import optuna

    new = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")  # optuna >= 4.9
    with warnings.catch_warnings():  # heartbeats and retries are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if new:
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
            when_stale = {"heartbeat_stale_trial_callback": retry}
        else:
            retry = optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY)
            when_stale = {"failed_trial_callback": retry}
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, **when_stale
        )


def tune(
    dataset: str, backbone: str, method_name: str, root: Path, storage_url: str | None = None
) -> Path:
    """`incbench tune`: run (or resume) the study and write best.json.

    `storage_url`: a shared optuna RDB storage for parallel trials (module docstring); None, the
    default, keeps the reproducible sequential study in its journal file."""
    import optuna

    from incbench.protocol import (
        Setup,
        backbone_params,
        pretrain_model,
        resolve_device,
        run_protocol,
    )

    params = load_params(root)
    cfg = tuning_from(params)
    protocol = protocol_from(params)
    device = resolve_device(params.get("device", "cpu"))
    spec = method.get(method_name, root)
    fixed = dict((params.get("methods") or {}).get(method_name) or {})
    defaults = spec.params(fixed)  # validates the fixed values before any work
    bmodule, bparams = backbone_params(params, backbone)
    out = tuning_dir(root, dataset, backbone, method_name)
    space = getattr(spec.module, "search_space", None)
    record: dict[str, Any] = {"dataset": dataset, "backbone": backbone, "method": method_name,
                              "method_version": spec.version, "trials": 0, "fixed": fixed,
                              "params": dataclasses.asdict(defaults), "tuned": False,
                              "adopted": "defaults"}  # fmt: skip
    budget = budget_from(params, backbone)
    if budget.tuning_trials is not None:
        cfg = dataclasses.replace(cfg, trials=budget.tuning_trials)
    skipped = budget.methods and method_name not in budget.methods
    if cfg.trials == 0 or space is None or skipped:
        record["reason"] = (
            f"outside budget.{backbone}.methods (compute budget)" if skipped
            else "no trials in the budget (tuning.trials / budget.<backbone>.tuning_trials)"
            if cfg.trials == 0 else "no search_space in the method file")  # fmt: skip
        _write(out, record, pd.DataFrame(), None)
        return out

    resolve = getattr(spec.module, "resolve", None)
    concrete = resolve(defaults, bparams) if resolve else defaults  # trial 0's values
    windows = load_windows(root / "data" / "windows" / dataset)
    inner, inner_protocol = inner_windows(windows, protocol, cfg)
    key = study_key(spec, fixed, inner_protocol, bparams, windows, cfg, budget.max_steps)
    trial_spec = dataclasses.replace(spec, module=SkipLastUpdate(spec.module, inner.n_windows))
    out.mkdir(parents=True, exist_ok=True)
    shared = storage_url is not None
    journal = None if shared else out / f"study-{key}.journal"
    for stale in out.glob("study-*.journal"):  # another setup's study: its trials do not apply
        if stale != journal:
            stale.unlink()
    if shared:
        storage = shared_storage(storage_url)
        record.update(storage="shared", reproducible=False, label=NON_REPRODUCIBLE)
    else:
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        )
    sampler_seed = train.seed_for(dataset, backbone, method_name) % 2**32
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=cfg.n_startup_trials)
    study = optuna.create_study(study_name=key, storage=storage, direction="maximize",
                                sampler=sampler, load_if_exists=True)  # fmt: skip
    start = {k: v for k, v in dataclasses.asdict(concrete).items()
             if k not in fixed and v is not None}  # fmt: skip
    state = optuna.trial.TrialState
    settled = (state.COMPLETE, state.PRUNED, state.WAITING)  # PRUNED: diverged, not retried
    if shared:  # another worker's RUNNING trial is alive until its heartbeat goes stale
        settled = (*settled, state.RUNNING)
    if not any(t.user_attrs.get("defaults") and t.state in settled for t in study.trials):
        study.enqueue_trial(start, user_attrs={"defaults": True})  # first, or again if interrupted
    for t in study.trials:  # left RUNNING by a killed run: fail it and queue its params again
        if t.state == state.RUNNING and not shared:  # shared: optuna fails only stale ones
            storage.set_trial_state_values(t._trial_id, state.FAIL)
            if not t.user_attrs.get("defaults"):
                study.enqueue_trial(t.params)
    m0s: dict[int, Any] = {}

    def objective(trial) -> float:
        values = {k: v for k, v in space(FixedAware(trial, fixed)).items() if k not in fixed}
        mparams = spec.params({**fixed, **values})
        if trial.user_attrs.get("defaults"):
            ran = resolve(mparams, bparams) if resolve else mparams
            if ran != concrete:
                raise ConfigError(f"methods/{method_name}.py: the defaults {concrete} are not "
                                  "what search_space returned for them; a None default needs "
                                  "resolve(params, backbone_params)")  # fmt: skip
        per_seed = []
        for seed in cfg.seeds:
            value, reason = evaluate_setting(mparams, seed)
            if value is None:
                raise optuna.TrialPruned(f"seed {seed}: {reason}")
            trial.set_user_attr(f"value_seed{seed}", value)
            per_seed.append(value)
        return statistics.fmean(per_seed)

    def evaluate_setting(mparams, seed: int) -> tuple[float | None, str]:
        """(objective on one seed, why not): the inner protocol from that seed's inner M0."""
        if seed not in m0s:  # one inner M0 per seed: stage pretrain_inner's, or trained here
            key = inner_key(inner_protocol, bparams, windows, seed, budget.max_steps, device)
            stored = inner_models_dir(root, dataset, backbone) / f"seed-{seed}"
            m0s[seed] = _stored_inner_m0(stored, key, device)
            if m0s[seed] is None:
                m0s[seed] = pretrain_model(inner, bmodule, bparams, inner_protocol, seed, device,
                                           budget)[0]  # fmt: skip
        setup = Setup(inner, trial_spec, mparams, inner_protocol, backbone, bmodule, bparams, seed,
                      device, lean=True, budget=budget)  # fmt: skip
        result = run_protocol(setup, m0s[seed])
        summary = result.summary
        if summary["status"] == "not_applicable":
            raise _NotApplicable(summary["reason"])
        value = inner_value(result.windows) if summary["status"] == "ok" else None
        if value is None or not math.isfinite(value):
            return None, summary["reason"] or "no finite objective"
        return value, ""

    def completed() -> list:
        return [t for t in study.trials if t.state == state.COMPLETE]

    failed = (state.FAIL, state.PRUNED)
    failures = sum(t.state in failed for t in study.trials)
    try:
        while len(completed()) < cfg.trials:
            if failures > cfg.max_failed:
                raise ConfigError(
                    f"tuning {method_name}: {failures} trials failed; check its search space"
                )
            study.optimize(objective, n_trials=1, catch=())
            if shared:  # other workers' trials interleave: count the study's failures
                failures = sum(t.state in failed for t in study.trials)
            else:
                failures += study.trials[-1].state in failed
    except _NotApplicable as exc:
        record["reason"] = f"not applicable: {exc}"
        _write(out, record, pd.DataFrame(), journal)
        return out

    done = completed()
    seed_cols = [f"value_seed{s}" for s in cfg.seeds]
    best = max(done, key=lambda t: (t.value, -t.number))  # ties: the earlier trial
    base = next((t for t in done if t.user_attrs.get("defaults")), None)
    others = [t for t in done if t is not base]
    challenger = max(others, key=lambda t: (t.value, -t.number)) if others else None
    record.update(trials=len(done), best_value=best.value, best_trial=best.number,
                  sampler_seed=sampler_seed, n_startup_trials=cfg.n_startup_trials,
                  seeds=list(cfg.seeds), study=journal.name if journal else key, adoption_rule=RULE,
                  objective=f"{OBJECTIVE} {list(cfg.seeds)}, {cfg.n_windows} inner windows "
                  "inside the base period")  # fmt: skip
    if base is not None:
        record.update(defaults_trial=base.number, defaults_value=base.value,
                      defaults_per_seed=[base.user_attrs[c] for c in seed_cols])  # fmt: skip
    if challenger is not None:
        record.update(challenger_trial=challenger.number, challenger_value=challenger.value,
                      challenger_per_seed=[challenger.user_attrs[c] for c in seed_cols],
                      challenger_params=challenger.params)  # fmt: skip
    if challenger is None:
        record["reason"] = "only the defaults completed"
    elif base is None:  # the defaults failed (e.g. diverged) inside the base period
        record.update(adopted="tuned", tuned=True, margin=None, spread=None)
    else:
        rule = adoption(record["defaults_per_seed"], record["challenger_per_seed"],
                        [[t.user_attrs[c] for c in seed_cols] for t in others])  # fmt: skip
        record.update({k: v for k, v in rule.items() if k != "adopt"})
        confirmed = True
        if rule["adopt"] and cfg.confirm_seeds:  # the best of K trials is optimistic: re-test
            tuned = spec.params({**fixed, **{k: v for k, v in challenger.params.items()
                                             if k not in fixed}})  # fmt: skip
            gains = []
            for seed in cfg.confirm_seeds:
                d, _ = evaluate_setting(concrete, seed)
                c, _ = evaluate_setting(tuned, seed)
                gains.append(None if d is None or c is None else c - d)
            confirmed = all(g is not None and g > 0 for g in gains)
            record.update(confirm_seeds=list(cfg.confirm_seeds), confirm_gains=gains)
        if rule["adopt"] and confirmed:
            record.update(adopted="tuned", tuned=True)
        elif rule["adopt"]:
            record["reason"] = (f"not confirmed: trial {challenger.number} beat the defaults by "
                                f"{rule['margin']:+.4f} > spread {rule['spread']:.4f} on the tuning "
                                f"seeds, but not on every fresh seed {list(cfg.confirm_seeds)} "
                                f"(gains {record['confirm_gains']})")  # fmt: skip
        elif rule["margin"] > 0:
            record["reason"] = (f"within seed noise: best tuned trial {challenger.number} "
                                f"beat the defaults by {rule['margin']:+.4f} <= spread "
                                f"{rule['spread']:.4f}")  # fmt: skip
        else:
            record["reason"] = (f"no tuned trial beat the defaults (best: trial "
                                f"{challenger.number}, {rule['margin']:+.4f})")  # fmt: skip
    if record["tuned"]:
        chosen = {k: v for k, v in challenger.params.items() if k not in fixed}
        record["params"] = dataclasses.asdict(spec.params({**fixed, **chosen}))
    used = challenger if record["tuned"] else base
    record["adopted_value"] = used.value if used is not None else None
    trials = pd.DataFrame(
        [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "defaults": bool(t.user_attrs.get("defaults")),
                **{c: t.user_attrs.get(c) for c in seed_cols},
                **t.params,
            }  # fmt: skip
            for t in study.trials
        ]
    )
    _write(out, record, trials, journal)
    return out


class _NotApplicable(Exception):
    pass


def _write(out: Path, record: dict, trials: pd.DataFrame, journal: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("study-*.journal"):  # studies of an older setup
        if journal is None or stale.name != journal.name:
            stale.unlink()
    io.write_csv(out / "trials.csv", trials)
    io.write_json(out / "best.json", record)
