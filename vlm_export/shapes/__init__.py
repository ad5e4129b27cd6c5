"""The shipped default model, ``tiny-shapes``, and the synthetic visual-QA task it was trained on.

``task`` (numpy + Pillow) makes the data, ``train`` (torch) makes the checkpoint, ``evaluate`` scores an
exported folder. The checkpoint itself is package data in ``tiny-shapes/`` with its model card.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_MODELS: dict[str, Path] = {"tiny-shapes": Path(__file__).parent / "tiny-shapes"}
DEFAULT_MODEL = "tiny-shapes"


def shipped_model(name: str) -> Path | None:
    """The folder of a model shipped with the package, by its short name."""
    folder = SHIPPED_MODELS.get(name)
    return folder if folder is not None and (folder / "config.json").is_file() else None
