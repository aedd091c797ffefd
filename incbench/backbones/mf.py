"""`mf`: matrix factorisation — a dot product of user and item factors plus biases.

    user id ─► user_emb p_u ─┐
                             ├─► Σ_d w_d · p_ud · q_id  +  b_u + b_i + b   ─► logit
    item id ─► item_emb q_i ─┘        (head: w, b)        (biases)

The well-understood model (Koren et al. 2009; with the diagonal head `w`, He et al.'s GMF),
trained with the protocol's BCE on sampled negatives plus an L2 penalty on the factor and bias
rows of each batch (`l2`, the classic per-example regulariser: a user or item that is not in
the batch is not shrunk, so an update on window t does not decay everyone else's taste), and
on the head's distance from 1 (else scaling p, q down and w up would evade the penalty).

Why not the two MLP towers this backbone had before: measured on the no-drift synthetic
stream (benchmarks/diagnose_mf.py), the towers learned only popularity within 5 epochs and
needed ~30 unregularised epochs to personalise, then overfitted; this model personalises
within a few epochs and, with the per-batch L2, plateaus instead of overfitting.

Parameter groups, input side first: `embeddings` (p, q), `biases` (b_u, b_i), `head` (w, b).
Cold rows: a new user or item gets zero factors and a zero bias. A user with no history is
therefore ranked by the item biases (b_i: the model's popularity prior) — the same declared
rule for every method; a never-seen item scores b_u + b (below any item with positive bias).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from incbench.backbones.base import Backbone, Recipe, grown
from incbench.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Params(Recipe):  # the recipe's fields (pretrain_epochs, lr, …) come from base.Recipe
    dim: int = 32
    init_std: float = 0.1
    l2: float = 0.01  # per-batch L2 on the factor and bias rows a batch touches

    def __post_init__(self):
        if self.dim < 1 or self.init_std <= 0 or self.l2 < 0:
            raise ConfigError("backbones.mf: dim >= 1, init_std > 0 and l2 >= 0 are required")
        self.check_recipe("mf")


class MF(Backbone):
    def __init__(self, n_users: int, n_items: int, params: Params):
        super().__init__()
        self.params = params
        self.user_emb = nn.Embedding(n_users, params.dim)
        self.item_emb = nn.Embedding(n_items, params.dim)
        nn.init.normal_(self.user_emb.weight, std=params.init_std)
        nn.init.normal_(self.item_emb.weight, std=params.init_std)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.head = nn.Linear(params.dim, 1)
        nn.init.ones_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def n_users(self) -> int:
        return self.user_emb.num_embeddings

    @property
    def n_items(self) -> int:
        return self.item_emb.num_embeddings

    def groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        return [
            ("embeddings", [self.user_emb.weight, self.item_emb.weight]),
            ("biases", [self.user_bias.weight, self.item_bias.weight]),
            ("head", list(self.head.parameters())),
        ]

    def grow(self, n_users: int, n_items: int) -> None:
        self.user_emb = grown(self.user_emb, n_users)
        self.item_emb = grown(self.item_emb, n_items)
        self.user_bias = grown(self.user_bias, n_users)
        self.item_bias = grown(self.item_bias, n_items)

    def _rows(self, users: torch.Tensor, items: torch.Tensor):
        """The factor and bias rows of a batch, looked up once (index_select: its backward is
        about twice as fast as nn.Embedding's on a CPU, and score and penalty share them)."""
        return (self.user_emb.weight.index_select(0, users),
                self.item_emb.weight.index_select(0, items),
                self.user_bias.weight.index_select(0, users).squeeze(-1),
                self.item_bias.weight.index_select(0, items).squeeze(-1))  # fmt: skip

    def _logits(self, p, q, b_u, b_i) -> torch.Tensor:
        return self.head(p * q).squeeze(-1) + b_u + b_i

    def score(self, users: torch.Tensor, items: torch.Tensor, rows=None) -> torch.Tensor:
        return self._logits(*self._rows(users, items))

    def score_and_penalty(self, users: torch.Tensor, items: torch.Tensor, rows=None):
        """One training step's logits and the L2 of the rows this batch touches (mean over the
        batch); the head is held near 1: the diagonal head would otherwise let p, q shrink
        while w grows (same scores, smaller penalty)."""
        p, q, b_u, b_i = self._rows(users, items)
        logits = self._logits(p, q, b_u, b_i)
        if not self.params.l2:
            return logits, None
        rows = p.square().sum(-1) + q.square().sum(-1) + b_u.square() + b_i.square()
        head = (self.head.weight - 1).square().sum()
        return logits, self.params.l2 * (rows.mean() + head)

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.score_and_penalty(users, items)[1]

    def item_index(self, n_items: int) -> torch.Tensor:
        """What serving precomputes once per model: [q_i · w | b_i] over the catalogue."""
        q = self.item_emb.weight[:n_items] * self.head.weight
        return torch.cat([q, self.item_bias.weight[:n_items]], dim=1)

    def score_index(self, users: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Logits [len(users), len(index)] against a precomputed item index."""
        user_part = self.user_bias(users) + self.head.bias  # [B, 1]
        return self.user_emb(users) @ index[:, :-1].T + index[:, -1] + user_part

    def score_all(self, users: torch.Tensor, n_items: int) -> torch.Tensor:
        return self.score_index(users, self.item_index(n_items))

    def config(self) -> dict:
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "params": dataclasses.asdict(self.params),
        }


def build(params: Params, n_users: int, n_items: int, side=None, seed: int = 0, config=None) -> MF:
    """A fresh model; initialisation depends only on `seed` (a local generator)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MF(n_users, n_items, params)
