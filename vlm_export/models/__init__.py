"""The family registry: each file in this package declares one family and registers it.

There is no central list: importing this package imports every module beside it, and each family
registers itself with ``@register``. Lookup goes by the checkpoint's ``architectures`` first, then by
its ``model_type``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from vlm_export.errors import UnsupportedModelError
from vlm_export.models.base import GraphExport, TinyCheckpoint, VLMFamily

_FAMILIES: dict[str, type[VLMFamily]] = {}


def register(cls: type[VLMFamily]) -> type[VLMFamily]:
    if cls.name in _FAMILIES and _FAMILIES[cls.name] is not cls:
        raise ValueError(f"family {cls.name!r} is registered twice")
    _FAMILIES[cls.name] = cls
    return cls


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in {"base"}:
            importlib.import_module(f"{__name__}.{info.name}")


def families() -> dict[str, type[VLMFamily]]:
    _discover()
    return dict(sorted(_FAMILIES.items()))


def supported_architectures() -> list[str]:
    return sorted(arch for fam in families().values() for arch in fam.architectures)


def family_for(config: Any) -> type[VLMFamily]:
    """The family that declares this config's architecture (or, failing that, its model_type)."""
    known = families().values()
    architectures = list(getattr(config, "architectures", None) or [])
    for arch in architectures:
        for fam in known:
            if arch in fam.architectures:
                return fam
    model_type = getattr(config, "model_type", None)
    for fam in known:
        if model_type in fam.model_types:
            return fam
    what = ", ".join(architectures) or f"model_type {model_type!r}"
    raise UnsupportedModelError(
        f"unsupported architecture {what}; supported: {', '.join(supported_architectures())}",
        fix="see DESIGN.md for how to add a family",
    )


__all__ = [
    "GraphExport",
    "TinyCheckpoint",
    "VLMFamily",
    "families",
    "family_for",
    "register",
    "supported_architectures",
]
