"""``vlm-export demo``: the whole path on the project's default model, offline.

Until a trained default model ships, the default is the tiny random-weight LLaVA that the tests use:
its words are noise, but every stage (convert with the parity gate, preprocessing, chat template,
vision -> projector -> merge -> prefill -> cached decode, streaming) runs for real.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlm_export.errors import VLMExportError
from vlm_export.sample_images import sample_image

DEMO_PROMPTS = ("Describe the image.", "What colour is the largest circle?")


@dataclass
class DemoRun:
    folder: Path
    image: Path
    validation: dict | None = None
    answers: list[tuple[str, object]] = field(default_factory=list)  # (prompt, GenerationResult)


def default_model(cache: Path) -> tuple[str, Path]:
    """Build (once) the default tiny checkpoint; returns its name and folder."""
    try:
        from vlm_export.models import families
    except ImportError as exc:
        raise VLMExportError(
            "the demo builds its model with torch", fix='install the export extra: pip install "vlm-export[export]"'
        ) from exc
    for family in families().values():
        for tiny in family.tiny_checkpoints():
            if "default" in tiny.tags:
                folder = cache / "checkpoints" / tiny.name
                if not (folder / "config.json").is_file():
                    tiny.build(folder, 0)
                return tiny.name, folder
    raise VLMExportError("no default model is registered")


def run_demo(
    cache: Path,
    max_new_tokens: int = 24,
    on_prompt: Callable[[str], None] | None = None,
    on_piece: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoRun:
    """Convert the default model into ``cache`` once, then stream answers to the demo prompts."""
    from vlm_export.runtimes.pipeline import VLMPipeline

    cache.mkdir(parents=True, exist_ok=True)
    name, checkpoint = default_model(cache)
    folder = cache / "exports" / name
    if not (folder / "manifest.json").is_file():
        from vlm_export.export.convert import convert

        convert(str(checkpoint), folder, overwrite=True, progress=progress)
    image = cache / "demo.png"
    sample_image(256).save(image)
    pipe = VLMPipeline.from_pretrained(folder)
    run = DemoRun(folder=folder, image=image, validation=pipe.manifest.validation)
    for prompt in DEMO_PROMPTS:
        if on_prompt:
            on_prompt(prompt)
        run.answers.append((prompt, pipe.generate(prompt, [image], max_new_tokens, on_text=on_piece)))
    return run
