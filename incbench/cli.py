"""The `incbench` command line. Each subcommand is one pipeline stage or helper."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from incbench import IncbenchError


def _root() -> Path:
    from incbench.config import project_root

    return project_root()


def cmd_datasets(args) -> None:
    from tabulate import tabulate

    from incbench.data import all_datasets

    rows = []
    for ds in all_datasets():
        size = f"{ds.expected.rows:,} rows" if ds.expected else "params.yaml: " + ds.name
        rows.append(
            [ds.name, ds.version, size, " > ".join(s.label for s in ds.sources), ds.licence]
        )
    print(tabulate(rows, headers=["dataset", "version", "size", "sources", "licence"]))


def cmd_fetch(args) -> None:
    from incbench.fetch import fetch_named

    record = fetch_named(args.name, _root())
    print(f"fetched {args.name} from {record['served_by']} ({record['location']})")


def cmd_split(args) -> None:
    from incbench.split import split_named

    manifest = split_named(args.name, _root())
    sizes = ", ".join(str(w["rows"]) for w in manifest["windows"])
    print(f"split {args.name}: {manifest['rows']} rows into base + {manifest['n_windows']} "
          f"windows ({sizes})")  # fmt: skip


def cmd_pretrain(args) -> None:
    from incbench.stages import pretrain

    out = pretrain(args.dataset, args.backbone, args.seed, _root())
    print(f"pretrained M0 -> {out}")


def cmd_run(args) -> None:
    from incbench.stages import run

    out = run(args.dataset, args.backbone, args.method, args.seed, _root())
    summary = json.loads((out / "summary.json").read_text())
    nw = summary["next_window"]
    detail = f"NDCG@10 {nw.get('ndcg@10')}" if summary["status"] == "ok" else summary["reason"]
    print(f"{out.name}: {summary['status']} ({detail})")


def cmd_tune(args) -> None:
    from incbench.tuning import tune

    out = tune(args.dataset, args.backbone, args.method, _root(), storage_url=args.storage)
    record = json.loads((out / "best.json").read_text())
    detail = (f"best NDCG@10 {record['best_value']:.4f} after {record['trials']} trials"
              if record["tuned"] else record.get("reason", "defaults"))  # fmt: skip
    print(f"{out.name}: {detail}" + (f" ({record['label']})" if "label" in record else ""))


def cmd_pretrain_inner(args) -> None:
    from incbench.tuning import pretrain_inner

    out = pretrain_inner(args.dataset, args.backbone, _root())
    skipped = (out / "SKIPPED.json").exists()
    print(f"inner M0s -> {out}" + (" (none: tuning is off for this backbone)" if skipped else ""))


def cmd_reference(args) -> None:
    from incbench.references import run_reference

    out = run_reference(args.dataset, args.name, _root())
    summary = json.loads((out / "summary.json").read_text())
    print(f"{out.name}: warm-user NDCG@10 (windows 2..N) "
          f"{summary['next_window'].get('warm_user:ndcg@10')}")  # fmt: skip


def cmd_calibrate(args) -> None:
    import pandas as pd

    from incbench.calibration import calibrate, params_from, summarise
    from incbench.config import load_params

    path = calibrate(args.backbone, _root())
    table, checks = summarise(pd.read_csv(path), params_from(load_params(_root())))
    print(f"wrote {path} (tables: incbench report)")
    print("\n".join(checks))


def cmd_report(args) -> None:
    from incbench.report import report

    for path in report(_root()):
        print(f"wrote {path}")


def cmd_compare(args) -> int:
    from incbench.compare import main as compare_main

    return compare_main(Path(args.a), Path(args.b))


def cmd_grid_plan(args) -> None:
    from incbench.grid import plan, plan_path

    root = _root()
    path = plan_path(root, args.plan)
    record = plan(root, args.stage, path)
    print(f"planned {len(record['cells'])} stale {args.stage} cells at commit "
          f"{record['commit'][:12]} -> {path}")  # fmt: skip
    for name, why in record["blocked"].items():
        print(f"  blocked: {name} ({why})")


def cmd_grid_run(args) -> int:
    from incbench.grid import plan_path, run_plan

    root = _root()
    path = plan_path(root, args.plan)
    status = run_plan(root, path, args.executor, parallel=args.parallel, gpus=args.gpus,
                      cpus=args.cpus, retries=args.retries, address=args.address,
                      timeout_min=args.timeout_min, partition=args.partition,
                      rerun=args.rerun)  # fmt: skip
    cells = status["cells"]
    failed = {n: c for n, c in cells.items() if c["state"] in ("failed", "pending")}
    ran = sum(c["state"] == "done" for c in cells.values())
    print(f"{ran} of {len(cells)} cells run on {args.executor} in {status.get('wall_s', 0):.1f} s, "
          f"{len(cells) - ran - len(failed)} skipped (done earlier or committed; --rerun runs "
          f"them) (status: {path.with_suffix('.status.json')})")  # fmt: skip
    for name, cell in failed.items():
        last = cell["attempts"][-1] if cell["attempts"] else {}
        print(f"  FAILED after {len(cell['attempts'])} attempts: {name}: {last.get('reason')}")
    return 1 if failed else 0


def cmd_grid_cell(args) -> int:
    from incbench.grid import plan_path, run_index

    receipt = run_index(_root(), plan_path(_root(), args.plan), args.index)
    print(f"{receipt['cell']}: " + ("done" if receipt["rc"] == 0 and not receipt["reason"]
                                     else f"FAILED ({receipt['reason']})"))  # fmt: skip
    if receipt.get("rc") != 0 and receipt.get("log_tail"):
        print(receipt["log_tail"], file=sys.stderr)
    return 0 if receipt["rc"] == 0 and not receipt["reason"] else 1


def cmd_grid_collect(args) -> int:
    from incbench.grid import collect, plan_path

    root = _root()
    result = collect(root, plan_path(root, args.plan))
    print(f"committed {len(result['accepted'])} cells to dvc.lock, refused "
          f"{len(result['refused'])}")  # fmt: skip
    for name, reasons in result["refused"].items():
        print(f"  refused {name}: " + "; ".join(reasons))
    print("stale now: " + (", ".join(result["stale_after"]) or "nothing"))
    return 1 if result["refused"] or result["still_stale"] else 0


def cmd_methods(args) -> None:
    from tabulate import tabulate

    from incbench.method import all_methods

    rows = [[m.name, m.version, ", ".join(m.tunable()) or "– (runs its defaults)",
             m.applicability(), m.description] for m in all_methods()]  # fmt: skip
    print(tabulate(rows, headers=["method", "version", "tuned over", "applies to", "description"]))


def cmd_new_method(args) -> None:
    from incbench.scaffold import new_method

    path = new_method(args.name, _root())
    print(
        f"wrote {path}; next: add `{args.name}: {{}}` under `methods:` in params.yaml, then dvc repro"
    )


def grid_parser(sub) -> None:
    """`incbench grid plan|run|cell|collect` (incbench/grid.py; README "Beyond one machine")."""
    grid = sub.add_parser("grid", help="run the grid's stale cells on Slurm, Ray or locally; "
                          "dvc commit what checks out").add_subparsers(dest="grid", required=True)  # fmt: skip
    plan_help = "plan file (default .dvc/tmp/grid/plan.json)"
    p = grid.add_parser("plan", help="the stale cells of one wave -> a plan file")
    p.add_argument("--stage", required=True, choices=["pretrain", "tune", "run"])
    p.add_argument("--plan", help=plan_help)
    p.set_defaults(func=cmd_grid_plan)
    p = grid.add_parser("run", help="run every planned cell's command on an executor")
    p.add_argument("--executor", required=True, choices=["local", "slurm", "ray", "debug"])
    p.add_argument("--parallel", type=int, default=1, help="cells running at once (array cap)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per cell")
    p.add_argument("--cpus", type=int, default=1, help="CPUs per cell")
    p.add_argument("--retries", type=int, default=2, help="retries of a failed cell")
    p.add_argument("--address", help="Ray cluster address (default: start Ray locally)")
    p.add_argument("--timeout-min", type=int, default=240, help="per cell (submitit, ray)")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="also run cells already done (a receipt collect accepts) or committed",
    )
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--plan", help=plan_help)
    p.set_defaults(func=cmd_grid_run)
    p = grid.add_parser("cell", help="run cell INDEX of the plan (sbatch --array, k8s indexed job)")
    p.add_argument("--index", required=True, type=int)
    p.add_argument("--plan", help=plan_help)
    p.set_defaults(func=cmd_grid_cell)
    p = grid.add_parser("collect", help="check each cell's receipt and provenance; dvc commit")
    p.add_argument("--plan", help=plan_help)
    p.set_defaults(func=cmd_grid_collect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="incbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list registered datasets").set_defaults(func=cmd_datasets)
    p = sub.add_parser("fetch", help="download and verify a dataset's raw files")
    p.add_argument("name")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("split", help="cut a fetched dataset into base period and windows")
    p.add_argument("name")
    p.set_defaults(func=cmd_split)
    for name, func, axes, text in (
        ("pretrain", cmd_pretrain, ("dataset", "backbone", "seed"), "train M0 on the base period"),
        ("run", cmd_run, ("dataset", "backbone", "method", "seed"), "the prequential loop for one method and seed"),
        ("tune", cmd_tune, ("dataset", "backbone", "method"), "tune a method's params on the base period (optuna)"),
        ("pretrain-inner", cmd_pretrain_inner, ("dataset", "backbone"), "train tuning's inner M0s, shared by every study"),
    ):  # fmt: skip
        p = sub.add_parser(name, help=text)
        for axis in axes:
            p.add_argument(f"--{axis}", required=True, type=int if axis == "seed" else str)
        p.set_defaults(func=func)
    sub.choices["tune"].add_argument(
        "--storage", default=None, metavar="URL",
        help="shared optuna RDB storage (e.g. postgresql://…) for parallel trials of one study: "
        "heartbeats, stale trials retried; the study is labelled non-reproducible",
    )  # fmt: skip
    p = sub.add_parser("reference", help="evaluate a reference row (popularity, oracle) as a run")
    p.add_argument("--dataset", required=True)
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_reference)
    p = sub.add_parser("calibrate", help="can this backbone see drift? streams with known truth")
    p.add_argument("--backbone", required=True)
    p.set_defaults(func=cmd_calibrate)
    p = sub.add_parser("report", help="write tables, plots and results/README.md")
    p.set_defaults(func=cmd_report)
    sub.add_parser("methods", help="list registered methods").set_defaults(func=cmd_methods)
    p = sub.add_parser("compare", help="did results folder B reproduce results folder A?")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=cmd_compare)
    grid_parser(sub)
    p = sub.add_parser("new-method", help="write a documented method template into methods/")
    p.add_argument("name")
    p.set_defaults(func=cmd_new_method)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except IncbenchError as exc:
        print(f"incbench: error: {exc}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
