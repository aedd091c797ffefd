"""Never updates after M0: the staleness baseline."""

from dataclasses import dataclass

VERSION = "1"


@dataclass(frozen=True)
class Params:
    pass


def update(ctx, params):
    return ctx.model
