"""``vlm-export eval``: exact-answer accuracy of an exported folder on the shapes task's test split.

The runtime side imports no torch. ``reference_answers`` (``--reference``) runs the PyTorch checkpoint
through transformers' own processor and ``generate`` on the same samples, so the two columns of the
report are measured the same way a user would measure them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlm_export.errors import VLMExportError
from vlm_export.shapes import task

MAX_NEW_TOKENS = 4  # answers are one or two words, then </s>


@dataclass
class Scored:
    """Answers to a list of samples and their exact-answer accuracy in percent."""

    answers: list[str]
    accuracy: float
    per_type: dict[str, float]

    @classmethod
    def of(cls, samples: Sequence[task.Sample], answers: list[str]) -> Scored:
        hits: dict[str, list[bool]] = {t: [] for t in task.QUESTION_TYPES}
        for sample, answer in zip(samples, answers):
            hits[sample.question_type].append(task.normalise_answer(answer) == sample.answer)
        every = [h for v in hits.values() for h in v]
        per_type = {k: round(100.0 * sum(v) / len(v), 2) for k, v in hits.items() if v}
        return cls(answers, round(100.0 * sum(every) / max(1, len(every)), 2), per_type)


@dataclass
class EvalReport:
    folder: str
    backend: str
    n: int
    seconds: float
    exported: Scored
    reference: Scored | None = None
    reference_source: str | None = None
    examples: list[dict] = field(default_factory=list)

    @property
    def agreement(self) -> float | None:
        """Share of samples where the export and PyTorch give the same (normalised) answer, in percent."""
        if self.reference is None:
            return None
        same = [
            task.normalise_answer(a) == task.normalise_answer(b)
            for a, b in zip(self.exported.answers, self.reference.answers)
        ]
        return round(100.0 * sum(same) / max(1, len(same)), 2)

    def to_json(self) -> dict:
        data = {
            "folder": self.folder,
            "backend": self.backend,
            "split": "test",
            "n": self.n,
            "seconds": round(self.seconds, 2),
            "accuracy": self.exported.accuracy,
            "per_type": self.exported.per_type,
            "examples": self.examples,
        }
        if self.reference is not None:
            data["reference"] = {
                "source": self.reference_source,
                "accuracy": self.reference.accuracy,
                "per_type": self.reference.per_type,
            }
            data["agreement"] = self.agreement
        return data


def _missing_words(folder: Path) -> list[str]:
    from tokenizers import Tokenizer

    from vlm_export.manifest import Manifest

    manifest = Manifest.load(folder)
    vocab = Tokenizer.from_file(str(Path(folder) / manifest.text.tokenizer_file)).get_vocab()
    return [w for w in task.vocabulary() if w not in vocab]


def trained_on_task(folder: Path) -> bool:
    """Whether ``folder`` can be scored on the shapes task (its tokenizer spells every task word)."""
    return not _missing_words(folder)


def check_task_vocabulary(folder: Path) -> None:
    """Refuse folders whose tokenizer cannot even spell the task's answers: their score would be noise."""
    missing = _missing_words(folder)
    if missing:
        raise VLMExportError(
            f"{folder} was not exported from a model trained on the shapes task "
            f"(its tokenizer has no {', '.join(repr(w) for w in missing[:3])})",
            fix="eval scores the shipped model: vlm-export convert tiny-shapes OUT, then vlm-export eval OUT",
        )


def evaluate(
    folder: str | Path,
    n: int = 500,
    backend: str = "onnxruntime",
    threads: int | None = None,
    reference: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Answer ``n`` test-split questions with the exported folder (and the PyTorch ``reference``)."""
    from vlm_export.runtimes.pipeline import VLMPipeline

    folder = Path(folder)
    check_task_vocabulary(folder)
    if n < 1:
        raise VLMExportError(f"--n must be at least 1, got {n}")
    samples = list(task.samples("test", n))
    pipe = VLMPipeline.from_pretrained(folder, backend=backend, threads=threads)
    started = time.perf_counter()
    answers = []
    for i, sample in enumerate(samples):
        answers.append(pipe.generate(sample.question, [sample.image()], MAX_NEW_TOKENS).text)
        if progress:
            progress(i + 1, n)
    seconds = time.perf_counter() - started
    report = EvalReport(str(folder), backend, n, seconds, Scored.of(samples, answers))
    if reference is not None:
        report.reference = Scored.of(samples, reference_answers(reference, samples))
        report.reference_source = reference
    report.examples = [
        {"question": s.question, "truth": s.answer, "answer": a} for s, a in list(zip(samples, answers))[:5]
    ]
    return report


def reference_answers(source: str, samples: Sequence[task.Sample]) -> list[str]:
    """Greedy answers of the PyTorch checkpoint through transformers' processor and ``generate``."""
    try:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
    except ImportError as exc:
        raise VLMExportError(
            "--reference runs the PyTorch model", fix='install the export extra: pip install "vlm-export[export]"'
        ) from exc
    from vlm_export.export.source import resolve

    path = resolve(source)
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    answers = []
    with torch.no_grad():
        for sample in samples:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sample.question}]}]
            text = processor.apply_chat_template(messages, add_generation_prompt=True)
            inputs = processor(text=text, images=sample.image(), return_tensors="pt")
            out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
            new = out[0, inputs["input_ids"].shape[1] :]
            answers.append(processor.tokenizer.decode(new, skip_special_tokens=True))
    return answers


def write_json(report: EvalReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
