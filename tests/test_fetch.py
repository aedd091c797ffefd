"""Fetching: GroupLens over a local HTTP server and file URLs, mirror fallback, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from incbench.data import DataError, Expected, WheelMirror
from incbench.fetch import fetch
from incbench.movielens import movielens
from tests.conftest import ml100k_zip, recbole_files, zip_bytes

SMALL = Expected(rows=5, users=3, items=3)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate = False

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if not self.truncate:
            return super().do_GET()
        body = Path(self.directory, self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 1000))  # promise more than we send
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])


@pytest.fixture
def server(tmp_path):
    """A loopback file server over tmp_path/www; yields (folder, base URL, handler class)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = type("H", (_Handler,), {})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(www), **k)
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()


def small_ml100k(url: str, sha256: str, mirrors=()):
    ds = movielens("ml-100k", sha256=sha256, expected=SMALL, description="test", mirrors=mirrors)
    src = dataclasses.replace(ds.sources[0], url=url)
    return dataclasses.replace(ds, sources=(src, *ds.sources[1:]))


def fake_wheel(folder: Path, members: dict[str, bytes]) -> None:
    """A valid wheel `fakemirror-1.0` holding `members`, for pip download --find-links."""
    dist = "fakemirror-1.0.dist-info"
    files = {f"fakemirror/{k}": v for k, v in members.items()}
    files[f"{dist}/METADATA"] = b"Metadata-Version: 2.1\nName: fakemirror\nVersion: 1.0\n"
    files[f"{dist}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist}/RECORD"] = b""
    (folder / "fakemirror-1.0-py3-none-any.whl").write_bytes(zip_bytes(files))


def mirror(folder: Path, files: dict[str, bytes], hashes: dict[str, str] | None = None):
    fake_wheel(folder, files)
    hashes = hashes or {k: sha(v) for k, v in files.items()}
    return WheelMirror(
        label="test-mirror",
        requirement="fakemirror==1.0",
        members={f"fakemirror/{k}": (k, hashes[k]) for k in files},
        find_links=str(folder),
    )


def no_leftovers(raw: Path) -> None:
    assert not raw.exists()
    assert not any(p.name.endswith(".partial") for p in raw.parent.rglob("*")), "temp file left"


def test_grouplens_over_http(server, tmp_path):
    www, base, _ = server
    data = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(data)
    raw = tmp_path / "raw" / "ml-100k"
    record = fetch(small_ml100k(f"{base}/ml-100k.zip", sha(data)), raw)
    assert record["served_by"] == "grouplens"
    assert record["files"] == {"ml-100k.zip": sha(data)}
    assert json.loads((raw / "SOURCE.json").read_text())["served_by"] == "grouplens"
    assert (raw / "ml-100k.zip").read_bytes() == data


def test_grouplens_from_file_url(tmp_path):
    data = ml100k_zip()
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(data)
    record = fetch(small_ml100k(archive.as_uri(), sha(data)), tmp_path / "raw" / "ml-100k")
    assert record["location"] == archive.as_uri()


def test_falls_back_to_wheel_mirror_and_records_it(server, tmp_path):
    _, base, _ = server
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    ds = small_ml100k(f"{base}/missing.zip", "0" * 64, mirrors=(mirror(wheels, recbole_files()),))
    raw = tmp_path / "raw" / "ml-100k"
    record = fetch(ds, raw)
    assert record["served_by"] == "test-mirror"
    assert record["failed_attempts"][0]["source"] == "grouplens"
    assert "404" in record["failed_attempts"][0]["error"]
    assert record["files"]["ml-100k.inter"] == sha(recbole_files()["ml-100k.inter"])
    assert sorted(p.name for p in raw.iterdir()) == [
        "SOURCE.json", "ml-100k.inter", "ml-100k.item", "ml-100k.user"
    ]  # fmt: skip


def test_checksum_mismatch_names_file_and_both_hashes(server, tmp_path):
    www, base, _ = server
    data = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(data)
    raw = tmp_path / "raw" / "ml-100k"
    with pytest.raises(DataError) as err:
        fetch(small_ml100k(f"{base}/ml-100k.zip", "ab" * 32), raw)
    msg = str(err.value)
    assert "checksum mismatch for ml-100k.zip" in msg
    assert "ab" * 32 in msg and sha(data) in msg
    no_leftovers(raw)


def test_mirror_member_checksum_mismatch(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    files = recbole_files()
    bad = mirror(wheels, files, {**{k: sha(v) for k, v in files.items()}, "ml-100k.user": "0" * 64})
    ds = small_ml100k((tmp_path / "absent.zip").as_uri(), "0" * 64, mirrors=(bad,))
    raw = tmp_path / "raw" / "ml-100k"
    with pytest.raises(DataError, match="checksum mismatch for fakemirror/ml-100k.user"):
        fetch(ds, raw)
    no_leftovers(raw)


def test_truncated_download(server, tmp_path):
    www, base, handler = server
    handler.truncate = True
    data = ml100k_zip()
    (www / "ml-100k.zip").write_bytes(data)
    raw = tmp_path / "raw" / "ml-100k"
    with pytest.raises(DataError, match="every source failed"):
        fetch(small_ml100k(f"{base}/ml-100k.zip", sha(data)), raw)
    no_leftovers(raw)


def test_unreachable_source(tmp_path):
    raw = tmp_path / "raw" / "ml-100k"
    ds = small_ml100k("http://127.0.0.1:9/ml-100k.zip", "0" * 64)  # port 9: nothing listens
    with pytest.raises(DataError) as err:
        fetch(ds, raw)
    assert "unreachable" in str(err.value) and "Nothing was written" in str(err.value)
    no_leftovers(raw)


def test_malformed_file_with_matching_hash_is_rejected(tmp_path):
    data = zip_bytes(
        {"ml-100k/u.data": b"1\t2\tthree\t4\n", "ml-100k/u.item": b"", "ml-100k/u.user": b""}
    )
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(data)
    raw = tmp_path / "raw" / "ml-100k"
    with pytest.raises(DataError, match="malformed row in u.data"):
        fetch(small_ml100k(archive.as_uri(), sha(data)), raw)
    no_leftovers(raw)


def test_unexpected_counts_mean_truncated_file(tmp_path):
    data = ml100k_zip()
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(data)
    ds = dataclasses.replace(small_ml100k(archive.as_uri(), sha(data)), expected=Expected(6, 3, 3))
    raw = tmp_path / "raw" / "ml-100k"
    with pytest.raises(DataError, match="has 5 rows / 3 users / 3 items, expected 6"):
        fetch(ds, raw)
    no_leftovers(raw)


def test_refetch_replaces_folder_whole(tmp_path):
    data = ml100k_zip()
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(data)
    raw = tmp_path / "raw" / "ml-100k"
    raw.mkdir(parents=True)
    (raw / "stale.txt").write_text("old")
    fetch(small_ml100k(archive.as_uri(), sha(data)), raw)
    assert not (raw / "stale.txt").exists()


def test_real_ml100k_from_the_recbole_wheel(project):
    """The offline mirror end to end: pip download the real wheel, verify, read 100,000 rows."""
    from incbench.cli import main

    assert main(["fetch", "ml-100k"]) == 0
    source = json.loads((project / "data/raw/ml-100k/SOURCE.json").read_text())
    assert source["served_by"] in ("grouplens", "recbole-1.2.1-wheel")
    assert main(["split", "ml-100k"]) == 0
    manifest = json.loads((project / "data/windows/ml-100k/manifest.json").read_text())
    assert manifest["rows"] == 100_000
    assert sum(w["rows"] for w in manifest["windows"]) == 100_000
    ends = [(w["start"], w["end"]) for w in manifest["windows"]]
    assert all(a[1] < b[0] for a, b in zip(ends, ends[1:])), "windows overlap in time"
    assert manifest["windows"][-1]["n_users_known"] == 943
    assert manifest["windows"][-1]["n_items_known"] == 1682


# ---- ml-1m's offline mirror: a PyPI source archive with CRLF text files -----------------------

ML1M_RATINGS = b"1::10::5::978300760\n1::11::3::978302109\n2::10::4::978301968\n2::12::2::978300275\n3::11::5::978824291\n"  # fmt: skip
ML1M_MOVIES = "10::Amélie (2001)::Comedy|Romance\n11::Heat (1995)::Action\n12::Ran (1985)::Drama|War\n".encode("latin-1")  # fmt: skip
ML1M_USERS = b"1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def fake_sdist(folder: Path, members: dict[str, bytes], truncate: bool = False) -> None:
    """A source archive `fakesdist-1.0.tar.gz` (setup.py + PKG-INFO + `members` under
    fakesdist-1.0/), for pip download --no-binary --find-links."""
    import io as _io
    import tarfile

    files = {
        "PKG-INFO": b"Metadata-Version: 2.1\nName: fakesdist\nVersion: 1.0\n",
        "setup.py": b"from setuptools import setup\nsetup(name='fakesdist', version='1.0')\n",
        **members,
    }
    buf = _io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"fakesdist-1.0/{name}")
            info.size = len(data)
            tf.addfile(info, _io.BytesIO(data))
    data = buf.getvalue()
    (folder / "fakesdist-1.0.tar.gz").write_bytes(data[: len(data) // 2] if truncate else data)


def small_ml1m(tmp_path: Path, hashes: dict[str, str] | None = None, truncate: bool = False):
    """ml-1m with GroupLens unreachable and a fake sdist mirror of CRLF members."""
    from incbench.data import SdistMirror

    folder = tmp_path / "sdists"
    folder.mkdir()
    members = {"data/ratings.dat": ML1M_RATINGS, "data/movies.dat": ML1M_MOVIES,
               "data/users.dat": ML1M_USERS}  # fmt: skip
    fake_sdist(folder, {k: crlf(v) for k, v in members.items()}, truncate=truncate)
    hashes = {**{k.split("/")[1]: sha(v) for k, v in members.items()}, **(hashes or {})}
    source = SdistMirror(
        label="test-sdist", requirement="fakesdist==1.0", find_links=str(folder),
        members={f"fakesdist-1.0/{k}": (k.split("/")[1], hashes[k.split("/")[1]])
                 for k in members},
    )  # fmt: skip
    ds = movielens("ml-1m", sha256="0" * 64, expected=SMALL, description="test",
                   mirrors=(source,))  # fmt: skip
    unreachable = dataclasses.replace(ds.sources[0], url=(tmp_path / "absent.zip").as_uri())
    return dataclasses.replace(ds, sources=(unreachable, source))


def test_ml1m_from_a_source_archive_with_crlf_members(tmp_path):
    """CRLF members are normalised before hashing (the published hashes are of LF files),
    written LF, read (movies.dat is Latin-1), and SOURCE.json names the mirror."""
    from incbench.fetch import read_checked

    raw = tmp_path / "raw" / "ml-1m"
    ds = small_ml1m(tmp_path)
    record = fetch(ds, raw)
    assert record["served_by"] == "test-sdist"
    assert record["failed_attempts"][0]["source"] == "grouplens"
    assert record["files"]["ratings.dat"] == sha(ML1M_RATINGS)
    assert record["files"]["source_archive"] == "fakesdist-1.0.tar.gz"
    assert (raw / "ratings.dat").read_bytes() == ML1M_RATINGS  # LF on disk
    assert json.loads((raw / "SOURCE.json").read_text())["served_by"] == "test-sdist"
    tables = read_checked(ds, raw)
    assert len(tables.interactions) == 5
    assert tables.items.set_index("item").loc[10, "title"] == "Amélie"  # Latin-1 decoded
    assert tables.items.set_index("item").loc[10, "year"] == 2001


def test_sdist_member_with_wrong_hash_keeps_nothing(tmp_path):
    raw = tmp_path / "raw" / "ml-1m"
    with pytest.raises(DataError, match="checksum mismatch for fakesdist-1.0/data/users.dat"):
        fetch(small_ml1m(tmp_path, hashes={"users.dat": "0" * 64}), raw)
    no_leftovers(raw)


def test_truncated_sdist_is_a_clear_error(tmp_path):
    raw = tmp_path / "raw" / "ml-1m"
    with pytest.raises(DataError) as err:
        fetch(small_ml1m(tmp_path, truncate=True), raw)
    assert "test-sdist" in str(err.value) and "fakesdist" in str(err.value)
    no_leftovers(raw)


def test_crlf_hash_would_differ_without_normalising(tmp_path):
    """The guard the normalisation exists for: the raw CRLF bytes do not match the LF hash."""
    assert sha(crlf(ML1M_RATINGS)) != sha(ML1M_RATINGS)
    raw = tmp_path / "raw" / "ml-1m"
    ds = small_ml1m(tmp_path)
    plain = dataclasses.replace(ds.sources[1], lf=False)
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(dataclasses.replace(ds, sources=(plain,)), raw)
    no_leftovers(raw)
