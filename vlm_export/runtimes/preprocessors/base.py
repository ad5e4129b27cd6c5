"""Image preprocessors: numpy/Pillow re-implementations of HF image processors, chosen by the manifest.

A preprocessor turns one image into pixel tiles for the vision encoder *and* into the text that stands
for the image in the prompt (the expansion of its placeholder), because for tiling processors the two
depend on each other. Each kind registers itself by the name the manifest's ``preprocessing.kind`` uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vlm_export.errors import ManifestError
from vlm_export.manifest import ImageTokens


@dataclass
class ProcessedImage:
    pixel_values: np.ndarray  # (tiles, channels, height, width), float32; (patches, features) for Fuyu
    prompt_text: str  # what replaces this image's placeholder in the prompt
    # the same as token ids, where tokenizing prompt_text would not give the processor's ids (Fuyu)
    prompt_ids: list[int] | None = None
    key: str = ""  # content hash of the decoded image (set by the pipeline; keys its embedding cache)


class ImagePreprocessor(ABC):
    def __init__(self, params: dict[str, Any], image_tokens: ImageTokens) -> None:
        self.params = params
        self.image_tokens = image_tokens

    @abstractmethod
    def __call__(self, image: Image.Image) -> ProcessedImage: ...


_KINDS: dict[str, type[ImagePreprocessor]] = {}


def register_preprocessor(kind: str) -> Callable[[type[ImagePreprocessor]], type[ImagePreprocessor]]:
    def wrap(cls: type[ImagePreprocessor]) -> type[ImagePreprocessor]:
        _KINDS[kind] = cls
        return cls

    return wrap


def create_preprocessor(params: dict[str, Any], image_tokens: ImageTokens) -> ImagePreprocessor:
    from vlm_export.runtimes import preprocessors  # noqa: F401  (registers the built-in kinds)

    kind = params.get("kind")
    if kind not in _KINDS:
        raise ManifestError(
            f"unknown image preprocessing kind {kind!r}; this runtime knows {', '.join(sorted(_KINDS))}",
            fix="upgrade vlm-export",
        )
    return _KINDS[kind]({k: v for k, v in params.items() if k != "kind"}, image_tokens)
