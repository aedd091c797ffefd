"""MovieLens ml-10m (GroupLens). 10,000,054 ratings (0.5-5) from 69,878 users on 10,677 movies, 1995 to 2009."""

from incbench.data import Expected
from incbench.movielens import movielens

DATASET = movielens(
    "ml-10m",
    sha256="813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
    expected=Expected(10_000_054, 69_878, 10_677),
    description="10,000,054 ratings (0.5-5) from 69,878 users on 10,677 movies, 1995 to 2009",
    mirrors=(),
)
