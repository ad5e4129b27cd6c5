"""How much a quantized folder differs from its fp32 source: sizes, per-graph cosine, greedy agreement.

Per graph, the quantized graph and its fp32 original get the *same* fp32 inputs (captured from the fp32
pipeline on sample prompts), so each cosine isolates that graph's error. Generation agreement then shows
what the errors add up to. For exports of the shipped model (``tiny-shapes``) the report adds what
matters most: exact-answer accuracy on the held-out task, fp32 and quantized, as ``vlm-export eval``
measures it. Runs on the runtime alone (no torch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vlm_export.manifest import DECODER, EMBED_TOKENS, PROJECTOR, VISION_ENCODER
from vlm_export.sample_images import sample_image

PROMPTS = (
    "Describe the image.",
    "What colour is the largest circle?",
    "How many circles are there?",
    "Where is the smallest shape?",
)


@dataclass
class GraphComparison:
    role: str
    precision: str
    mb: float
    fp32_mb: float
    cosine: float  # worst over the sample inputs


@dataclass
class TaskAccuracy:
    """``vlm-export eval`` on both folders: exact-answer accuracy in percent on ``n`` test questions."""

    n: int
    fp32: float
    quantized: float
    fp32_per_type: dict[str, float]
    quantized_per_type: dict[str, float]

    @property
    def drop(self) -> float:
        return round(self.fp32 - self.quantized, 2)


@dataclass
class QuantReport:
    graphs: list[GraphComparison] = field(default_factory=list)
    task: TaskAccuracy | None = None
    token_agreement: float = 0.0  # share of generated positions equal to fp32's
    exact_generations: int = 0
    generations: int = 0
    new_tokens: int = 0

    @property
    def total_mb(self) -> float:
        return sum(g.mb for g in self.graphs)

    @property
    def fp32_mb(self) -> float:
        return sum(g.fp32_mb for g in self.graphs)

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "total_mb": self.total_mb,
            "fp32_mb": self.fp32_mb,
            "size_ratio": self.total_mb / self.fp32_mb if self.fp32_mb else None,
            "accuracy_drop": self.task.drop if self.task else None,
        }


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom else float(np.array_equal(a, b))


def _graph_inputs(pipe, prompt: str, image) -> dict[str, dict[str, np.ndarray]]:
    """The fp32 pipeline's own input to every graph for one request."""
    from vlm_export.runtimes.pipeline import KVCache

    prepared = pipe.prepare(prompt, [image])
    features = pipe.encode_images(prepared.pixel_values)
    embeds = pipe.merge(pipe.embed(prepared.input_ids), prepared.input_ids, pipe.project(features))
    empty = KVCache.empty(pipe.manifest)
    total = embeds.shape[1]
    return {
        VISION_ENCODER: {"pixel_values": prepared.pixel_values},
        PROJECTOR: {"image_features": features},
        EMBED_TOKENS: {"input_ids": prepared.input_ids},
        DECODER: {
            "inputs_embeds": embeds,
            "attention_mask": np.ones((1, total), dtype=np.int64),
            "position_ids": np.arange(total, dtype=np.int64)[None],
            **empty.arrays,
        },
    }


def compare_folders(
    fp32_folder: Path, quantized_folder: Path, prompts=PROMPTS, new_tokens: int = 16, task_samples: int = 500
) -> QuantReport:
    from vlm_export.runtimes.pipeline import VLMPipeline

    ref = VLMPipeline.from_pretrained(fp32_folder)
    quant = VLMPipeline.from_pretrained(quantized_folder)
    images = [sample_image(96, 80, seed=i) for i in range(len(prompts))]
    worst: dict[str, float] = {}
    for prompt, image in zip(prompts, images):
        for role, feeds in _graph_inputs(ref, prompt, image).items():
            if role not in quant.graphs:
                continue
            a, b = ref.graphs[role].run(feeds), quant.graphs[role].run(feeds)
            first = ref.graphs[role].output_names[0]
            worst[role] = min(worst.get(role, 1.0), _cosine(a[first], b[first]))
    report = QuantReport(new_tokens=new_tokens, generations=len(prompts))
    for role, info in quant.manifest.graphs.items():
        report.graphs.append(
            GraphComparison(
                role=role,
                precision=info.precision,
                mb=_mb(Path(quantized_folder), info.files),
                fp32_mb=_mb(Path(fp32_folder), ref.manifest.graphs[role].files),
                cosine=worst.get(role, float("nan")),
            )
        )
    agree = []
    for prompt, image in zip(prompts, images):
        a = ref.generate(prompt, [image], max_new_tokens=new_tokens, min_new_tokens=new_tokens).token_ids
        b = quant.generate(prompt, [image], max_new_tokens=new_tokens, min_new_tokens=new_tokens).token_ids
        agree.append(np.mean(np.equal(a, b)))
        report.exact_generations += a == b
    report.token_agreement = float(np.mean(agree))
    report.task = task_accuracy(fp32_folder, quantized_folder, task_samples)
    return report


def task_accuracy(fp32_folder: Path, quantized_folder: Path, n: int) -> TaskAccuracy | None:
    """Both folders scored on the shapes task, when they are exports of a model trained on it."""
    from vlm_export.shapes.evaluate import evaluate, trained_on_task

    if n <= 0 or not trained_on_task(Path(fp32_folder)):
        return None
    ref, quant = evaluate(fp32_folder, n).exported, evaluate(quantized_folder, n).exported
    return TaskAccuracy(n, ref.accuracy, quant.accuracy, ref.per_type, quant.per_type)


def _mb(folder: Path, files: list[str]) -> float:
    return sum((folder / name).stat().st_size for name in files) / 1e6
