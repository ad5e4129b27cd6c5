"""Image preprocessors by kind. Importing this package registers the built-in ones."""

from vlm_export.runtimes.preprocessors import clip, idefics3  # noqa: F401
from vlm_export.runtimes.preprocessors.base import (
    ImagePreprocessor,
    ProcessedImage,
    create_preprocessor,
    register_preprocessor,
)

__all__ = ["ImagePreprocessor", "ProcessedImage", "create_preprocessor", "register_preprocessor"]
