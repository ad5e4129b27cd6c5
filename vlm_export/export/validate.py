"""The parity gate: exported graphs against their torch modules, and generation against transformers.

Two checks, both run by ``convert`` before the folder is published:
1. each graph on its example inputs (batch 2, past > 0 for the decoder): max abs difference, scaled
   tolerance and cosine similarity against the torch module;
2. a short greedy generation through the real runtime pipeline (preprocessing, tokenization, merge,
   KV cache) against ``model.generate`` on the same input ids and pixels, token by token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from vlm_export.models.base import GraphExport, VLMFamily
from vlm_export.sample_images import sample_image

# fp32 tolerance: |onnx - torch| <= ABS_TOL * max(1, max|torch|). Measured on the tiny and 256M models:
# differences of 1e-8..1e-6 relative; this leaves two orders of magnitude of headroom.
ABS_TOL = 1e-4
MIN_COSINE = 0.99999
VALIDATION_PROMPT = "Describe the image."


@dataclass
class GraphParity:
    role: str
    max_abs_diff: float
    max_abs_ref: float
    cosine: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.cosine >= MIN_COSINE


@dataclass
class GenerationParity:
    prompt: str
    expected: list[int]
    got: list[int]

    @property
    def passed(self) -> bool:
        return self.expected == self.got

    @property
    def first_mismatch(self) -> int | None:
        for i, (a, b) in enumerate(zip(self.expected, self.got)):
            if a != b:
                return i
        return None if len(self.expected) == len(self.got) else min(len(self.expected), len(self.got))


@dataclass
class ValidationReport:
    graphs: list[GraphParity] = field(default_factory=list)
    generation: GenerationParity | None = None

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.graphs) and (self.generation is None or self.generation.passed)

    def as_dict(self) -> dict:
        out = {
            "passed": self.passed,
            "graphs": [{**asdict(g), "passed": g.passed} for g in self.graphs],
        }
        if self.generation is not None:
            out["generation"] = {
                **asdict(self.generation),
                "passed": self.generation.passed,
                "first_mismatch": self.generation.first_mismatch,
            }
        return out


def compare_graph(graph: GraphExport, run) -> GraphParity:
    """``run(feeds) -> dict of outputs``: the exported graph, loaded by a runtime backend."""
    with torch.no_grad():
        ref = graph.module(*graph.inputs.values())
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = run({name: t.numpy() for name, t in graph.inputs.items()})
    expected = np.concatenate([r.detach().numpy().astype(np.float64).ravel() for r in ref])
    actual = np.concatenate([got[name].astype(np.float64).ravel() for name in graph.output_names])
    max_ref = float(np.abs(expected).max()) if expected.size else 0.0
    diff = float(np.abs(expected - actual).max()) if expected.size else 0.0
    denom = float(np.linalg.norm(expected) * np.linalg.norm(actual))
    cosine = float(expected @ actual / denom) if denom > 0 else float(np.array_equal(expected, actual))
    return GraphParity(graph.role, diff, max_ref, cosine, ABS_TOL * max(1.0, max_ref))


def compare_generation(family: VLMFamily, folder: Path, max_new_tokens: int = 12) -> GenerationParity:
    from vlm_export.runtimes.pipeline import VLMPipeline

    pipe = VLMPipeline.from_pretrained(folder, verify=False)
    raw = not pipe.manifest.text.chat_template and not pipe.manifest.text.prompt_layout
    prompt = VALIDATION_PROMPT
    if raw:
        prompt = f"{pipe.manifest.image.placeholder}{prompt}" if pipe.manifest.image else prompt
    prepared = pipe.prepare(prompt, [sample_image(64)], raw=raw)
    got = list(pipe.generate_ids(prepared, max_new_tokens=max_new_tokens))
    expected = family.reference_generate(
        torch.from_numpy(prepared.input_ids),
        None if prepared.pixel_values is None else torch.from_numpy(prepared.pixel_values),
        max_new_tokens,
    )
    # transformers returns the EOS token it stopped at; the runtime stops before yielding it
    eos = set(pipe.manifest.text.eos_token_ids)
    for i, token in enumerate(expected):
        if token in eos:
            expected = expected[:i]
            break
    return GenerationParity(prompt=prompt, expected=expected, got=got)
