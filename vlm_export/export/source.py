"""Opening the source checkpoint: a local folder, or a hub id where a network exists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_export.errors import ModelLoadError

if TYPE_CHECKING:
    from vlm_export.models.base import VLMFamily

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve(model: str) -> str:
    """A local folder's absolute path, a shipped model's folder (``tiny-shapes``), or the hub id unchanged."""
    from vlm_export.shapes import shipped_model

    path = Path(model).expanduser()
    shipped = shipped_model(model)
    if shipped is not None and not path.exists():
        return str(shipped)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{model} is a file, not a model folder", fix="pass the checkpoint's folder")
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{model} is not a model folder (no config.json)",
                fix="pass a folder written by save_pretrained, or a hub id",
            )
        return str(path.resolve())
    if _HUB_ID.match(model) and "/" in model:
        return model
    raise ModelLoadError(f"{model} does not exist", fix="pass a checkpoint folder or a hub id such as org/name")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_config(source: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot read the config of {source}: {_first_line(exc)}") from None


@dataclass
class SourceFiles:
    """The non-weight parts of a checkpoint: processor (image processor + tokenizer) and generation config."""

    processor: Any
    tokenizer: Any
    generation_config: Any


def load_processor(source: str, family: type[VLMFamily]) -> SourceFiles:
    from transformers import AutoTokenizer, GenerationConfig

    try:
        processor = family.load_processor(source)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises many types here
        raise ModelLoadError(f"cannot load the processor of {source}: {_first_line(exc)}") from None
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(source)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"{source} has no fast tokenizer (tokenizer.json)",
            fix="install the tokenizer's converter dependencies (sentencepiece, protobuf) and re-save it",
        )
    try:
        generation_config = GenerationConfig.from_pretrained(source)
    except OSError:
        generation_config = None
    return SourceFiles(processor, tokenizer, generation_config)
