"""The ``--quant`` language: a precision per graph, with options, or a named preset.

    --quant int4                                   preset: int4 decoder, int8 vision and projector, int4 embeddings
    --quant decoder=int4:block=32,vision=int8,projector=fp32,embed=int4
    --quant decoder=int4:block=64:asym:accuracy=0,vision=int8:target=avx512_vnni

Graphs not named keep fp32. Short names: vision = vision_encoder, embed = embed_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vlm_export.errors import VLMExportError
from vlm_export.manifest import DECODER, EMBED_TOKENS, GRAPH_ROLES, PROJECTOR, VISION_ENCODER

PRECISIONS = ("int4", "int8", "fp16", "fp32")  # smallest first: a fallback moves right
ALIASES = {"vision": VISION_ENCODER, "embed": EMBED_TOKENS, "embeddings": EMBED_TOKENS}
BLOCK_SIZES = (16, 32, 64, 128)
# int8 kernels differ by CPU: "portable" works everywhere; the others are optimum's
# AutoQuantizationConfig presets for that CPU (see recipes.int8_settings).
INT8_TARGETS = ("portable", "arm64", "avx2", "avx512", "avx512_vnni")


class QuantSpecError(VLMExportError):
    """A --quant string that cannot be read."""


@dataclass(frozen=True)
class GraphRecipe:
    """How one graph is compressed. Options only matter for int4 (block-wise weight-only)."""

    precision: str = "fp32"
    block_size: int = 128
    symmetric: bool = True
    accuracy_level: int = 4  # MatMulNBits: 4 = int8 compute (fast on CPUs with VNNI / dot-product)
    target: str = "portable"  # int8 only: which CPU's int8 kernels the weights are laid out for

    def label(self) -> str:
        if self.precision == "int8":
            return "int8" if self.target == "portable" else f"int8:target={self.target}"
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


def parse_quant(text: str, target_cpu: str | None = None) -> QuantSpec:
    """Read a preset or per-graph spec; ``target_cpu`` applies to every int8 graph without its own."""
    spec = _parse(text.strip())
    if target_cpu is None:
        return spec
    if target_cpu not in INT8_TARGETS:
        raise QuantSpecError(f"unknown target CPU {target_cpu!r}", fix=f"use one of {', '.join(INT8_TARGETS)}")
    recipes = {
        role: replace(r, target=target_cpu) if r.precision == "int8" and r.target == "portable" else r
        for role, r in spec.recipes.items()
    }
    return QuantSpec(recipes)


def _parse(text: str) -> QuantSpec:
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
            elif key == "target" and precision == "int8" and val in INT8_TARGETS:
                kwargs["target"] = val
            else:
                raise ValueError
        except ValueError:
            raise QuantSpecError(
                f"unknown option {option!r} in {part!r}",
                fix=f"int4 takes block={'/'.join(map(str, BLOCK_SIZES))}, sym or asym, accuracy=0..4; "
                f"int8 takes target={'/'.join(INT8_TARGETS)}",
            ) from None
    if precision not in ("int4", "int8") and kwargs or precision == "int8" and set(kwargs) - {"target"}:
        raise QuantSpecError(f"options in {part!r} do not apply to {precision}")
    return GraphRecipe(precision, **kwargs)
