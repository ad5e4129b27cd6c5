"""``vlm-export demo``: the whole path on the shipped model, offline.

Converts ``tiny-shapes`` (once; the export is cached under a name that changes with the checkpoint),
draws a held-out picture, asks three questions through the torch-free runtime and returns each answer
beside the ground truth, with the runtime's per-stage timings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlm_export.errors import VLMExportError
from vlm_export.shapes import DEFAULT_MODEL, shipped_model, task


@dataclass
class DemoAnswer:
    question: str
    truth: str
    result: object  # GenerationResult

    @property
    def correct(self) -> bool:
        return task.normalise_answer(self.result.text) == self.truth


@dataclass
class DemoRun:
    folder: Path
    image: Path
    validation: dict | None = None
    answers: list[DemoAnswer] = field(default_factory=list)


def demo_sample() -> tuple[task.Sample, list[tuple[str, str]]]:
    """The first three-shape picture of the test split, and three questions about it with their answers."""
    sample = next(s for s in task.samples("test", 100) if len(s.shapes) == 3)
    first, second = sample.shapes[0], sample.shapes[1]
    questions = [
        (f"what colour is the {first.kind}?", first.colour),
        (f"where is the {second.kind}?", second.position),
        ("how many shapes are there?", task.NUMBERS[len(sample.shapes)]),
    ]
    return sample, questions


def _export_folder(cache: Path, checkpoint: Path) -> Path:
    digest = hashlib.sha256((checkpoint / "model.safetensors").read_bytes()).hexdigest()[:12]
    return cache / "exports" / f"{DEFAULT_MODEL}-{digest}"


def run_demo(
    cache: Path,
    max_new_tokens: int = 8,
    on_question: Callable[[str], None] | None = None,
    on_piece: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoRun:
    """Convert the shipped model into ``cache`` once, then stream its answers to the demo questions."""
    from vlm_export.runtimes.pipeline import VLMPipeline

    checkpoint = shipped_model(DEFAULT_MODEL)
    if checkpoint is None:
        raise VLMExportError(
            f"the shipped model {DEFAULT_MODEL} is missing from this installation",
            fix="reinstall vlm-export, or rebuild it with: make train-tiny",
        )
    cache.mkdir(parents=True, exist_ok=True)
    folder = _export_folder(cache, checkpoint)
    if not (folder / "manifest.json").is_file():
        try:
            from vlm_export.export.convert import convert
        except ImportError as exc:
            raise VLMExportError(
                "the demo's first run converts the model with torch",
                fix='install the export extra: pip install "vlm-export[export]"',
            ) from exc
        convert(str(checkpoint), folder, overwrite=True, progress=progress)
    sample, questions = demo_sample()
    image = cache / "demo.png"
    sample.image().save(image)
    pipe = VLMPipeline.from_pretrained(folder)
    run = DemoRun(folder=folder, image=image, validation=pipe.manifest.validation)
    for question, truth in questions:
        if on_question:
            on_question(question)
        result = pipe.generate(question, [image], max_new_tokens, on_text=on_piece)
        run.answers.append(DemoAnswer(question, truth, result))
    return run
