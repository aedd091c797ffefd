"""MovieLens ml-25m (GroupLens). 25,000,095 ratings (0.5-5) from 162,541 users on 59,047 movies, 1995 to 2019."""

from incbench.data import Expected
from incbench.movielens import movielens

DATASET = movielens(
    "ml-25m",
    sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
    expected=Expected(25_000_095, 162_541, 59_047),
    description="25,000,095 ratings (0.5-5) from 162,541 users on 59,047 movies, 1995 to 2019",
    mirrors=(),
)
