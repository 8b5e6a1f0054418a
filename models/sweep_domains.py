"""A sweep's domains: where each path's values are drawn from ({"choice": [...]}, {"uniform": [lo, hi]},
{"loguniform": [lo, hi]}, {"int": [lo, hi]}).

Their checks sit in model validators, so that an error is at ("space", path, "uniform"), not one level
deeper at the field of the same name. Each also names the values that check_points tries first (its
marks) and draws one at random; models/sweeps.py maps them to Optuna's distributions."""

from __future__ import annotations

import math
import random
from typing import Annotated, Any

from pydantic import BaseModel, Discriminator, Field, model_validator
from pydantic import Tag as UnionTag

from models.spec import Strict

Scalar = str | int | float | bool | None
Integer = int  # IntDomain's field is called int, as in the JSON, and hides the builtin in its body


class ChoiceDomain(Strict):
    choice: list[Scalar] = Field(description="the values to try (JSON scalars); grid tries every one")

    @model_validator(mode="after")
    def _distinct_values(self) -> ChoiceDomain:
        if not self.choice:
            raise ValueError("a choice needs at least one value")
        if len(set(self.choice)) != len(self.choice):  # 1, 1.0 and true are one value to Optuna too
            raise ValueError("the values of a choice must be distinct (1, 1.0 and true count as one)")
        return self

    def marks(self) -> list[Any]:
        return list(self.choice)

    def draw(self, draws: random.Random) -> Any:
        return draws.choice(self.choice)


class UniformDomain(Strict):
    uniform: tuple[float, float] = Field(description="[lo, hi]: a float drawn uniformly, lo < hi")

    @model_validator(mode="after")
    def _ordered(self) -> UniformDomain:
        _check_bounds(*self.uniform, strict=True)
        return self

    def marks(self) -> list[Any]:
        lo, hi = self.uniform
        return [lo, (lo + hi) / 2, hi]

    def draw(self, draws: random.Random) -> Any:
        return draws.uniform(*self.uniform)


class LogUniformDomain(Strict):
    loguniform: tuple[float, float] = Field(
        description="[lo, hi]: a float whose logarithm is drawn uniformly, 0 < lo < hi (learning rates)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> LogUniformDomain:
        lo, hi = self.loguniform
        if lo <= 0:
            raise ValueError(f"loguniform needs lo above 0, got {lo}")
        _check_bounds(lo, hi, strict=True)
        return self

    def marks(self) -> list[Any]:
        lo, hi = self.loguniform
        return [lo, math.sqrt(lo * hi), hi]

    def draw(self, draws: random.Random) -> Any:
        return math.exp(draws.uniform(*map(math.log, self.loguniform)))


class IntDomain(Strict):
    int: tuple[Integer, Integer] = Field(
        description="[lo, hi]: an integer drawn uniformly, lo <= hi, both included"
    )

    @model_validator(mode="after")
    def _ordered(self) -> IntDomain:
        _check_bounds(*self.int, strict=False)
        return self

    def marks(self) -> list[Any]:
        lo, hi = self.int
        return sorted({lo, (lo + hi) // 2, hi})

    def draw(self, draws: random.Random) -> Any:
        return draws.randint(*self.int)


def _check_bounds(lo: float, hi: float, strict: bool) -> None:
    if lo > hi or (strict and lo == hi):
        raise ValueError(f"lo ({lo}) must be {'below' if strict else 'at most'} hi ({hi})")


def _domain_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next(iter(value)) if len(value) == 1 else None
    return next(iter(type(value).model_fields)) if isinstance(value, BaseModel) else None


Domain = Annotated[
    Annotated[ChoiceDomain, UnionTag("choice")]
    | Annotated[UniformDomain, UnionTag("uniform")]
    | Annotated[LogUniformDomain, UnionTag("loguniform")]
    | Annotated[IntDomain, UnionTag("int")],
    Discriminator(
        _domain_kind,
        custom_error_type="domain",
        custom_error_message='a domain is one of {"choice": [...]}, {"uniform": [lo, hi]}, '
        '{"loguniform": [lo, hi]} or {"int": [lo, hi]}',
    ),
]
