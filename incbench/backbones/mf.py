"""`mf`: user and item ID embeddings, a two-tower MLP, and a bilinear head.

    user id ─► user_emb ─► tower.0 (Linear+GELU) ─► tower.1 (Linear) ─┐
                                                                      ├─► head(u ⊙ i) ─► logit
    item id ─► item_emb ─► tower.0 (Linear+GELU) ─► tower.1 (Linear) ─┘

Parameter groups, input side first: `embeddings`, `tower.0`, …, `head`. The head is a linear
map of the element-wise product, so scoring the whole catalogue is one matrix product.
New users and items get zero embedding rows: every unseen item then has the same "cold" score
(the towers' response to zero), and GELU keeps gradients flowing into the new rows.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from incbench.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Params:
    dim: int = 32
    layers: tuple[int, ...] = (64, 32)
    init_std: float = 0.1
    # training recipe shared by pretraining and full_retrain
    pretrain_groups: tuple[str, ...] = ()  # groups trained by the recipe; () = every group
    pretrain_epochs: int = 5
    lr: float = 0.01
    batch_size: int = 4096
    weight_decay: float = 0.0
    max_steps: int = 0  # optimiser steps per fit call at most (0 = no cap)
    # budget: which of the grid's seeds this backbone runs (() = all), tuning trials (None = tuning.trials)
    seeds: tuple[int, ...] = ()
    tuning_trials: int | None = None

    def __post_init__(self):
        if self.dim < 1 or not self.layers or min(self.layers) < 1:
            raise ConfigError("backbones.mf: dim and every entry of layers must be >= 1")
        if self.pretrain_epochs < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ConfigError("backbones.mf: pretrain_epochs, lr and batch_size must be > 0")


def _tower(dim: int, layers: tuple[int, ...]) -> nn.ModuleList:
    blocks, width = [], dim
    for k, out in enumerate(layers):
        last = k == len(layers) - 1
        blocks.append(
            nn.Linear(width, out) if last else nn.Sequential(nn.Linear(width, out), nn.GELU())
        )
        width = out
    return nn.ModuleList(blocks)


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, params: Params):
        super().__init__()
        self.params = params
        self.user_emb = nn.Embedding(n_users, params.dim)
        self.item_emb = nn.Embedding(n_items, params.dim)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        nn.init.normal_(self.item_emb.weight, std=params.init_std)
        self.user_tower = _tower(params.dim, params.layers)
        self.item_tower = _tower(params.dim, params.layers)
        self.head = nn.Linear(params.layers[-1], 1)

    @property
    def n_users(self) -> int:
        return self.user_emb.num_embeddings

    @property
    def n_items(self) -> int:
        return self.item_emb.num_embeddings

    def groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        out = [("embeddings", [self.user_emb.weight, self.item_emb.weight])]
        for k, (u, i) in enumerate(zip(self.user_tower, self.item_tower)):
            out.append((f"tower.{k}", [*u.parameters(), *i.parameters()]))
        out.append(("head", list(self.head.parameters())))
        return out

    def grow(self, n_users: int, n_items: int) -> None:
        self.user_emb = _grown(self.user_emb, n_users)
        self.item_emb = _grown(self.item_emb, n_items)

    @staticmethod
    def _run(tower: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for block in tower:
            x = block(x)
        return x

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self._run(self.user_tower, self.user_emb(users))

    def item_vectors(self, items: torch.Tensor | None = None, n_items: int | None = None):
        table = self.item_emb.weight if items is None else self.item_emb(items)
        if items is None and n_items is not None:
            table = table[:n_items]
        return self._run(self.item_tower, table)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.head(self.user_vectors(users) * self.item_vectors(items)).squeeze(-1)

    def item_index(self, n_items: int) -> torch.Tensor:
        """What serving precomputes once per model: the item tower over the catalogue."""
        return self.item_vectors(n_items=n_items)

    def score_index(self, users: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Logits [len(users), len(index)] against a precomputed item index."""
        return (self.user_vectors(users) * self.head.weight) @ index.T + self.head.bias

    def score_all(self, users: torch.Tensor, n_items: int) -> torch.Tensor:
        return self.score_index(users, self.item_index(n_items))

    def config(self) -> dict:
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "params": dataclasses.asdict(self.params),
        }


def _grown(emb: nn.Embedding, n: int) -> nn.Embedding:
    if n <= emb.num_embeddings:
        return emb
    new = nn.Embedding(n, emb.embedding_dim).to(emb.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[: emb.num_embeddings] = emb.weight
    new.weight.requires_grad_(emb.weight.requires_grad)
    return new


def build(params: Params, n_users: int, n_items: int, side=None, seed: int = 0, config=None) -> MF:
    """A fresh model; initialisation depends only on `seed` (a local generator)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MF(n_users, n_items, params)
