"""Image preprocessors by kind. Importing this package registers every module in it: a new kind is one
new file here, registered with ``@register_preprocessor``."""

import importlib
import pkgutil

from vlm_export.runtimes.preprocessors.base import (
    ImagePreprocessor,
    ProcessedImage,
    create_preprocessor,
    register_preprocessor,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ImagePreprocessor", "ProcessedImage", "create_preprocessor", "register_preprocessor"]
