"""What a backend is: something that loads one graph file and runs it on numpy arrays.

The pipeline (merge, KV cache, sampling, streaming) is shared by every backend; a backend only knows how
to load and run a graph. New backends register themselves by name with ``@register_backend``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vlm_export.errors import BackendError
from vlm_export.manifest import DecoderInfo, GraphInfo


class Graph(ABC):
    """One loaded graph."""

    input_names: list[str]
    output_names: list[str]
    # True when the graph keeps the decoder's KV cache itself (onnxruntime's in-place variant, OpenVINO
    # stateful models): the pipeline
    # then feeds no past tensors, reads no present tensors, and calls reset_kv_cache for each new request.
    holds_kv_cache: bool = False

    def reset_kv_cache(self, batch: int = 1) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Start an empty KV cache for ``batch`` sequences (only for graphs that hold one)."""

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with named inputs; return every output by name."""


class Backend(ABC):
    name: str

    def __init__(self, threads: int | None = None, device: str = "CPU") -> None:
        self.threads = threads
        self.device = device

    @abstractmethod
    def load(self, path: Path, info: GraphInfo, decoder: DecoderInfo | None = None) -> Graph:
        """Load one graph file for inference; ``decoder`` is given for the decoder graph (KV layout)."""

    def describe(self) -> dict[str, str]:
        """Library version and execution target, for reports."""
        return {"backend": self.name}


_BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]:
    def wrap(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return wrap


def create_backend(name: str, threads: int | None = None, device: str = "CPU", **options) -> Backend:
    """``options`` are backend-specific (OpenVINO: ``precision``)."""
    from vlm_export.runtimes import backends  # noqa: F401  (imports the built-in backends)

    if name not in _BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: {', '.join(sorted(_BACKENDS))}")
    import inspect

    accepted = set(inspect.signature(_BACKENDS[name]).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise BackendError(f"the {name} backend does not take {', '.join(unknown)}")
    return _BACKENDS[name](threads=threads, device=device, **options)
