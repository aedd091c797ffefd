"""MovieLens ml-20m (GroupLens). 20,000,263 ratings (0.5-5) from 138,493 users on 26,744 movies, 1995 to 2015."""

from incbench.data import Expected
from incbench.movielens import movielens

DATASET = movielens(
    "ml-20m",
    sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
    expected=Expected(20_000_263, 138_493, 26_744),
    description="20,000,263 ratings (0.5-5) from 138,493 users on 26,744 movies, 1995 to 2015",
    mirrors=(),
)
