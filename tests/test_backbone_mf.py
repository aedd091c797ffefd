"""The mf backbone: groups, growth, scoring consistency, checkpoint round trip, and that it
learns personal taste (not only popularity)."""

import numpy as np
import pandas as pd
import torch

from incbench.backbones import mf
from incbench.checkpoint import load_model, save_model


def model():
    return mf.build(mf.Params(dim=4), n_users=5, n_items=7, seed=0)


def test_groups_ordered_and_cover_every_parameter_once():
    m = model()
    names = [n for n, _ in m.groups()]
    assert names == ["embeddings", "biases", "head"]
    ids = [id(p) for _, ps in m.groups() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in m.parameters()) and len(set(ids)) == len(ids)


def test_grow_keeps_old_rows_and_adds_cold_ones():
    m = model()
    old_u, old_i = m.user_emb.weight.detach().clone(), m.item_emb.weight.detach().clone()
    m.grow(8, 10)
    assert torch.equal(m.user_emb.weight[:5], old_u) and torch.equal(m.item_emb.weight[:7], old_i)
    assert (m.user_emb.weight[5:] == 0).all() and (m.item_emb.weight[7:] == 0).all()
    assert (m.user_bias.weight[5:] == 0).all() and (m.item_bias.weight[7:] == 0).all()
    scores = m.score_all(torch.tensor([0]), 10)[0]
    assert torch.allclose(scores[7], scores[8]) and torch.allclose(scores[8], scores[9])
    with torch.no_grad():
        m.item_bias.weight[:] = torch.arange(10.0).unsqueeze(1)
    cold_user = m.score_all(torch.tensor([6]), 10)[0]  # no history: ranked by item bias
    assert torch.equal(torch.argsort(cold_user, descending=True), torch.arange(9, -1, -1))
    m.grow(3, 3)  # never shrinks
    assert m.n_users == 8 and m.n_items == 10


def test_score_all_matches_pairwise_score():
    m = model().eval()
    users = torch.tensor([0, 3, 4])
    full = m.score_all(users, 7)
    pairs = m.score(users.repeat_interleave(7), torch.arange(7).repeat(3)).reshape(3, 7)
    assert torch.allclose(full, pairs, atol=1e-6)


def test_same_seed_same_init_other_seed_other_init():
    a, b = model(), model()
    c = mf.build(mf.Params(dim=4), 5, 7, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.user_emb.weight, c.user_emb.weight)


def test_checkpoint_round_trip(tmp_path):
    m = model()
    m.grow(6, 9)
    save_model(m, "mf", tmp_path / "m")
    name, loaded = load_model(tmp_path / "m")
    assert name == "mf" and loaded.n_items == 9
    for (k, v), (_, w) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(v, w), k


def test_penalty_touches_only_the_batch_rows():
    m = model()
    m.user_emb.weight.grad = None
    m.penalty(torch.tensor([1]), torch.tensor([2])).backward()
    grad = m.user_emb.weight.grad
    assert grad[1].abs().sum() > 0 and grad[[0, 2, 3, 4]].abs().sum() == 0
    assert m.item_emb.weight.grad[[0, 1, 3, 4, 5, 6]].abs().sum() == 0


def test_learns_single_genre_taste_not_popularity():
    """Each user likes one genre; item popularity is flat: a model that learned only
    popularity ranks at random, one that learned taste ranks the user's genre first."""
    from incbench import train

    rng = np.random.default_rng(0)
    n_users, n_genres, per_genre = 80, 4, 12
    genre_of_user = np.arange(n_users) % n_genres
    rows = []
    for u in range(n_users):
        g = genre_of_user[u]
        for i in rng.choice(per_genre, size=8, replace=False):
            rows.append((u, g * per_genre + i))
    frame = pd.DataFrame(rows, columns=["user_idx", "item_idx"])
    frame["positive"], frame["timestamp"] = True, np.arange(len(frame))
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame["timestamp"] = np.arange(len(frame))
    n_items = n_genres * per_genre
    p = mf.Params(dim=8)
    m = mf.build(p, n_users, n_items, seed=0)
    train.fit(m, frame, n_items=n_items, n_negatives=4, lr=p.lr, epochs=p.pretrain_epochs,
              batch_size=256, seed=0, val_fraction=p.val_fraction, patience=p.patience)  # fmt: skip
    with torch.no_grad():
        top = m.score_all(torch.arange(n_users), n_items).topk(5, dim=1).indices.numpy()
    share = ((top // per_genre) == genre_of_user[:, None]).mean(axis=1)
    assert (share == 1.0).mean() >= 0.8, share
