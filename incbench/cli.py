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
    from incbench.config import load_params
    from incbench.data import get
    from incbench.fetch import fetch

    ds = get(args.name)
    options = load_params().get("datasets") or {}
    params = options.get(ds.name) if isinstance(options, dict) else None
    record = fetch(ds, _root() / "data" / "raw" / ds.name, params)
    print(f"fetched {ds.name} from {record['served_by']} ({record['location']})")


def cmd_split(args) -> None:
    from incbench.config import load_params, protocol_from
    from incbench.data import get
    from incbench.fetch import read_checked
    from incbench.split import write_split

    protocol = protocol_from(load_params())  # validated before any work
    ds = get(args.name)
    raw = _root() / "data" / "raw" / ds.name
    source_file = raw / "SOURCE.json"
    if not source_file.exists():
        raise IncbenchError(f"{ds.name} is not fetched: run `incbench fetch {ds.name}` first")
    source = json.loads(source_file.read_text())
    tables = read_checked(ds, raw)
    served = {k: source[k] for k in ("served_by", "location", "files", "params") if k in source}
    info = {"name": ds.name, "version": ds.version, "source": served}
    manifest = write_split(tables, protocol, _root() / "data" / "windows" / ds.name, info)
    sizes = ", ".join(str(w["rows"]) for w in manifest["windows"])
    print(f"split {ds.name}: {manifest['rows']} rows into base + {manifest['n_windows']} "
          f"windows ({sizes})")  # fmt: skip


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except IncbenchError as exc:
        print(f"incbench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
