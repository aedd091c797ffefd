"""The mf backbone: groups, growth, scoring consistency, checkpoint round trip."""

import torch

from incbench.backbones import mf
from incbench.train import load_model, save_model


def model():
    return mf.build(mf.Params(dim=4, layers=(8, 4)), n_users=5, n_items=7, seed=0)


def test_groups_ordered_and_cover_every_parameter_once():
    m = model()
    names = [n for n, _ in m.groups()]
    assert names == ["embeddings", "tower.0", "tower.1", "head"]
    ids = [id(p) for _, ps in m.groups() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in m.parameters()) and len(set(ids)) == len(ids)


def test_grow_keeps_old_rows_and_adds_cold_ones():
    m = model()
    old_u, old_i = m.user_emb.weight.detach().clone(), m.item_emb.weight.detach().clone()
    m.grow(8, 10)
    assert torch.equal(m.user_emb.weight[:5], old_u) and torch.equal(m.item_emb.weight[:7], old_i)
    assert (m.user_emb.weight[5:] == 0).all() and (m.item_emb.weight[7:] == 0).all()
    scores = m.score_all(torch.tensor([0]), 10)[0]
    assert torch.allclose(scores[7], scores[8]) and torch.allclose(
        scores[8], scores[9]
    )  # cold score
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
    c = mf.build(mf.Params(dim=4, layers=(8, 4)), 5, 7, seed=1)
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
