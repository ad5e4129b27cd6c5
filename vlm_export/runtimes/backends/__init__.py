"""Runtime backends. Importing this package registers the built-in ones."""

from vlm_export.runtimes.backends import onnxruntime_backend, openvino_backend  # noqa: F401
from vlm_export.runtimes.backends.base import Backend, Graph, create_backend, register_backend

__all__ = ["Backend", "Graph", "create_backend", "register_backend"]
