"""The ``--quant`` language: a precision per graph, with options, or a named preset.

    --quant int4                                   preset: int4 decoder, int8 vision and projector, int4 embeddings
    --quant decoder=int4:block=32,vision=int8,projector=fp32,embed=int4
    --quant decoder=int4:block=64:asym:accuracy=0

Graphs not named keep fp32. Short names: vision = vision_encoder, embed = embed_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlm_export.errors import VLMExportError
from vlm_export.manifest import DECODER, EMBED_TOKENS, GRAPH_ROLES, PROJECTOR, VISION_ENCODER

PRECISIONS = ("int4", "int8", "fp16", "fp32")  # smallest first: a fallback moves right
ALIASES = {"vision": VISION_ENCODER, "embed": EMBED_TOKENS, "embeddings": EMBED_TOKENS}
BLOCK_SIZES = (16, 32, 64, 128)


class QuantSpecError(VLMExportError):
    """A --quant string that cannot be read."""


@dataclass(frozen=True)
class GraphRecipe:
    """How one graph is compressed. Options only matter for int4 (block-wise weight-only)."""

    precision: str = "fp32"
    block_size: int = 128
    symmetric: bool = True
    accuracy_level: int = 4  # MatMulNBits: 4 = int8 compute (fast on CPUs with VNNI / dot-product)

    def label(self) -> str:
        if self.precision != "int4":
            return self.precision
        sym = "sym" if self.symmetric else "asym"
        return f"int4:block={self.block_size}:{sym}:accuracy={self.accuracy_level}"


@dataclass(frozen=True)
class QuantSpec:
    recipes: dict[str, GraphRecipe] = field(default_factory=dict)

    def recipe(self, role: str) -> GraphRecipe:
        return self.recipes.get(role, GraphRecipe())

    def label(self) -> str:
        return ",".join(f"{role}={self.recipe(role).label()}" for role in GRAPH_ROLES)


def _uniform(precision: str) -> dict[str, GraphRecipe]:
    return {role: GraphRecipe(precision) for role in GRAPH_ROLES}


PRESETS: dict[str, QuantSpec] = {
    "fp32": QuantSpec(_uniform("fp32")),
    "fp16": QuantSpec(_uniform("fp16")),
    "int8": QuantSpec(_uniform("int8")),
    # int4 where the decoder's weights dominate; the vision side keeps int8 (OCR-style tasks suffer first)
    "int4": QuantSpec(
        {
            VISION_ENCODER: GraphRecipe("int8"),
            PROJECTOR: GraphRecipe("int8"),
            EMBED_TOKENS: GraphRecipe("int4", block_size=32),
            DECODER: GraphRecipe("int4"),
        }
    ),
    "int4-all": QuantSpec({**_uniform("int4"), EMBED_TOKENS: GraphRecipe("int4", block_size=32)}),
}


def parse_quant(text: str) -> QuantSpec:
    text = text.strip()
    if text in PRESETS:
        return PRESETS[text]
    recipes: dict[str, GraphRecipe] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, eq, value = part.partition("=")
        role = ALIASES.get(role.strip(), role.strip())
        if not eq or role not in GRAPH_ROLES:
            raise QuantSpecError(
                f"cannot read {part!r} in --quant",
                fix=f"use a preset ({', '.join(PRESETS)}) or GRAPH=PRECISION[:options] with GRAPH in "
                "vision, projector, embed, decoder",
            )
        recipes[role] = _recipe(value.strip(), part)
    if not recipes:
        raise QuantSpecError("--quant is empty", fix=f"use a preset: {', '.join(PRESETS)}")
    return QuantSpec(recipes)


def _recipe(value: str, part: str) -> GraphRecipe:
    precision, *options = value.split(":")
    if precision not in PRECISIONS:
        raise QuantSpecError(f"unknown precision {precision!r} in {part!r}", fix=f"use one of {', '.join(PRECISIONS)}")
    kwargs: dict = {}
    for option in options:
        key, _, val = option.partition("=")
        try:
            if key == "block" and int(val) in BLOCK_SIZES:
                kwargs["block_size"] = int(val)
            elif key in ("sym", "asym") and not val:
                kwargs["symmetric"] = key == "sym"
            elif key == "accuracy" and int(val) in (0, 1, 2, 3, 4):
                kwargs["accuracy_level"] = int(val)
            else:
                raise ValueError
        except ValueError:
            raise QuantSpecError(
                f"unknown option {option!r} in {part!r}",
                fix=f"int4 takes block={'/'.join(map(str, BLOCK_SIZES))}, sym or asym, accuracy=0..4",
            ) from None
    if kwargs and precision != "int4":
        raise QuantSpecError(f"options in {part!r} only apply to int4")
    return GraphRecipe(precision, **kwargs)
