"""A seeded synthetic stream with controllable drift; sized by `synthetic:` in params.yaml."""

from incbench import synthetic
from incbench.data import Dataset, Generated

DATASET = Dataset(
    name="synthetic",
    version="1",
    description="Seeded stream with preference shift, new users/items and popularity drift",
    licence="generated (no licence restrictions)",
    homepage="incbench/synthetic.py",
    sources=(Generated("generator", synthetic.generate),),
    read=synthetic.read,
    expected=None,
)
