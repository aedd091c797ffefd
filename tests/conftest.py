"""Shared fixtures: a throw-away project folder and small files in every real format."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def make_project(tmp: Path, params: dict | None = None) -> Path:
    """A project folder with the repo's plugins and a params.yaml (defaults overridable)."""
    for folder in ("methods", "datasets"):
        shutil.copytree(REPO / folder, tmp / folder, ignore=shutil.ignore_patterns("__pycache__"))
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in (params or {}).items():
        base[key] = value
    (tmp / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    return tmp


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    monkeypatch.setenv("INCBENCH_ROOT", str(root))
    monkeypatch.chdir(root)
    return root


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# Five ratings by three users on three movies, the same in every format below.
RATINGS = [(1, 10, 5, 100), (2, 10, 3, 100), (1, 20, 4, 105), (3, 30, 1, 110), (2, 30, 4, 120)]
MOVIES = [(10, "Amélie (2001)", "Comedy|Romance"), (20, "Heat (1995)", "Action|Crime"),
          (30, "Alien (1979)", "Horror|Sci-Fi")]  # fmt: skip


def ml100k_zip() -> bytes:
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
              "Romance", "Sci-Fi", "Thriller", "War", "Western"]  # fmt: skip
    data = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS)
    items = ""
    for item, title, gs in MOVIES:
        flags = "|".join("1" if g in gs.split("|") else "0" for g in genres)
        items += f"{item}|{title}|01-Jan-1995||http://x|{flags}\n"
    users = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
    return zip_bytes(
        {
            "ml-100k/u.data": data.encode(),
            "ml-100k/u.item": items.encode("latin-1"),
            "ml-100k/u.user": users.encode(),
        }
    )


def recbole_files() -> dict[str, bytes]:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter += "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS)
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    for i, title, gs in MOVIES:
        name, year = title[:-7], title[-5:-1]
        item += f"{i}\t{name}\t{year}\t{gs.replace('|', ' ')}\n"
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    user += "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n3\t23\tM\twriter\t32067\n"
    return {"ml-100k.inter": inter.encode(), "ml-100k.item": item.encode(),
            "ml-100k.user": user.encode()}  # fmt: skip


def dat_zip(folder: str, with_users: bool) -> bytes:
    ratings = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in RATINGS)
    movies = "".join(f"{i}::{t}::{g}\n" for i, t, g in MOVIES)
    members = {
        f"{folder}/ratings.dat": ratings.encode(),
        f"{folder}/movies.dat": movies.encode("latin-1"),
    }
    if with_users:
        members[f"{folder}/users.dat"] = b"1::M::25::4::85711\n2::F::50::1::94043\n3::M::18::2::3\n"
    return zip_bytes(members)


def csv_zip(folder: str) -> bytes:
    ratings = "userId,movieId,rating,timestamp\n"
    ratings += "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in RATINGS)
    movies = "movieId,title,genres\n" + "".join(f'{i},"{t}",{g}\n' for i, t, g in MOVIES)
    return zip_bytes(
        {f"{folder}/ratings.csv": ratings.encode(), f"{folder}/movies.csv": movies.encode()}
    )


# ---- a small synthetic project, fetched, split and pretrained once per test session --------

SMALL_PARAMS = {
    "datasets": {
        "synthetic": {"n_interactions": 3000, "n_users": 150, "n_items": 100, "n_phases": 4}
    },
    "protocol": {
        "base_fraction": 0.5,
        "n_windows": 3,
        "holdout_fraction": 0.1,
        "min_window_rows": 20,
    },
    "backbones": {"mf": {"dim": 8, "pretrain_epochs": 2, "batch_size": 512}},
    "seeds": [0],
    "calibration": {
        "backbones": ["mf"],
        "shifts": [0.0, 0.8],
        "seeds": [0],
        "methods": ["frozen", "full_retrain"],
        "stream": {"n_users": 60, "n_items": 40, "n_interactions": 3000, "n_phases": 4},
    },
}


@pytest.fixture(scope="session")
def small_project(tmp_path_factory):
    from incbench.fetch import fetch_named
    from incbench.split import split_named
    from incbench.stages import pretrain

    root = make_project(tmp_path_factory.mktemp("small"), SMALL_PARAMS)
    fetch_named("synthetic", root)
    split_named("synthetic", root)
    pretrain("synthetic", "mf", 0, root)
    return root


TINY_TEXT: dict = {}  # root -> (params, budget, M0): a 2-layer random BERT, built once


def tiny_text(root: Path):
    """A tiny random BERT (2 layers, width 32; the real tokenizer) as a local model folder, and
    an M0 of the text backbone on it: the text contract tests run in seconds."""
    if root not in TINY_TEXT:
        import torch
        from transformers import AutoTokenizer, BertConfig, BertModel

        from incbench.backbones import text
        from incbench.config import Budget, load_params, protocol_from
        from incbench.protocol import pretrain_model
        from incbench.split import load_windows

        folder = root / "tiny-bert"
        if not folder.exists():
            tokenizer = AutoTokenizer.from_pretrained(text.resolve_model_path(text.DEFAULT_MODEL))
            config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                max_position_embeddings=64)  # fmt: skip
            torch.manual_seed(0)
            BertModel(config, add_pooling_layer=False).save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        params = text.Params(model_name_or_path=str(folder), max_tokens=8, dim=8, recent=4,
                             pretrain_epochs=2, batch_size=512)  # fmt: skip
        windows = load_windows(root / "data" / "windows" / "synthetic")
        protocol = protocol_from(load_params(root))
        m0, _ = pretrain_model(windows, text, params, protocol, seed=0)
        TINY_TEXT[root] = (params, Budget(max_steps=2), m0)
    return TINY_TEXT[root]


def small_setup(root: Path, method_name: str, overrides: dict | None = None, seed: int = 0,
                backbone: str = "mf"):  # fmt: skip
    """(Setup, M0) for one method on the small project, as `incbench run` builds them."""
    import copy

    from incbench import checkpoint, method
    from incbench.backbones import text
    from incbench.config import load_params, protocol_from
    from incbench.paths import model_id
    from incbench.protocol import Setup, backbone_params
    from incbench.split import load_windows

    params = load_params(root)
    spec = method.get(method_name, root)
    windows = load_windows(root / "data" / "windows" / "synthetic")
    if backbone == "text":
        bparams, budget, m0 = tiny_text(root)
        setup = Setup(windows, spec, spec.params(overrides), protocol_from(params), "text", text,
                      bparams, seed, budget=budget)  # fmt: skip
        return setup, copy.deepcopy(m0)
    bmodule, bparams = backbone_params(params, "mf")
    _, m0 = checkpoint.load_model(root / "models" / model_id("synthetic", "mf", 0))
    setup = Setup(windows, spec, spec.params(overrides), protocol_from(params), "mf", bmodule,
                  bparams, seed)  # fmt: skip
    return setup, m0
