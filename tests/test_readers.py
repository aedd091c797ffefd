"""Every MovieLens reader on small files in its real format (written here)."""

import pandas as pd
import pytest

from incbench.data import DataError
from incbench.movielens import read_csv_archive, read_dat, read_ml100k
from tests.conftest import MOVIES, RATINGS, csv_zip, dat_zip, ml100k_zip, recbole_files

EXPECTED = pd.DataFrame(RATINGS, columns=["user", "item", "rating", "timestamp"]).astype(
    {"rating": "float32"}
)


def _check(tables):
    pd.testing.assert_frame_equal(tables.interactions.reset_index(drop=True), EXPECTED)
    items = tables.items.set_index("item")
    assert items.loc[10, "title"] == "Amélie"  # latin-1 decoded, year stripped from the title
    assert items.loc[10, "year"] == 2001
    assert set(items.loc[30, "genres"].split("|")) == {"Horror", "Sci-Fi"}
    assert len(items) == len(MOVIES)


def test_ml100k_grouplens_zip(tmp_path):
    (tmp_path / "ml-100k.zip").write_bytes(ml100k_zip())
    tables = read_ml100k(tmp_path)
    _check(tables)
    assert list(tables.users["user"]) == [1, 2, 3]


def test_ml100k_recbole_mirror_reads_the_same_table(tmp_path):
    for name, data in recbole_files().items():
        (tmp_path / name).write_bytes(data)
    tables = read_ml100k(tmp_path)
    _check(tables)
    assert tables.users.loc[0, "occupation"] == "technician"


@pytest.mark.parametrize(
    "name,folder,users", [("ml-1m", "ml-1m", True), ("ml-10m", "ml-10M100K", False)]
)
def test_dat_archives(tmp_path, name, folder, users):
    (tmp_path / f"{name}.zip").write_bytes(dat_zip(folder, users))
    tables = read_dat(tmp_path, f"{name}.zip")
    _check(tables)
    assert (tables.users is not None) == users


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m"])
def test_csv_archives(tmp_path, name):
    (tmp_path / f"{name}.zip").write_bytes(csv_zip(name))
    _check(read_csv_archive(tmp_path, f"{name}.zip"))


def test_malformed_row_names_the_file(tmp_path):
    files = recbole_files()
    files["ml-100k.inter"] += b"7\tnot-a-number\t3\t5\n"
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=r"malformed row in ml-100k\.inter"):
        read_ml100k(tmp_path)


def test_missing_field_is_malformed(tmp_path):
    files = recbole_files()
    files["ml-100k.inter"] += b"7\t8\n"
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match="malformed row"):
        read_ml100k(tmp_path)


def test_archive_without_member(tmp_path):
    from tests.conftest import zip_bytes

    (tmp_path / "ml-1m.zip").write_bytes(zip_bytes({"ml-1m/movies.dat": b""}))
    with pytest.raises(DataError, match="no member named ratings.dat"):
        read_dat(tmp_path, "ml-1m.zip")
