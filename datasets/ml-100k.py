"""MovieLens ml-100k (GroupLens). 100,000 ratings (1-5) from 943 users on 1,682 movies, 1997-09 to 1998-04."""

from incbench.data import Expected
from incbench.movielens import RECBOLE_ML100K, movielens

DATASET = movielens(
    "ml-100k",
    sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    expected=Expected(100_000, 943, 1_682),
    description="100,000 ratings (1-5) from 943 users on 1,682 movies, 1997-09 to 1998-04",
    mirrors=(RECBOLE_ML100K,),
)
