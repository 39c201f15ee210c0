"""A toy analysis added through the registry alone: one file, one registration line (see test_architecture)."""

from __future__ import annotations

from dataclasses import dataclass

from streamscope.analyses import REGISTRY, Analysis
from streamscope.optionspec import opt


@dataclass(frozen=True)
class ToyOptions:
    toy_scale: float = opt(2.0, "What the largest value is multiplied by.", metavar="X")


def scaled_max(ctx, options: ToyOptions) -> dict:
    return {"scaled_max": options.toy_scale * ctx.acc.summary()["max"]}


TOY = Analysis(name="toy", kind="tensor", help="the largest value times toy_scale", options=ToyOptions, compute=scaled_max)

if "toy" not in REGISTRY.analyses:
    REGISTRY.register(TOY)
