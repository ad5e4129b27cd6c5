"""onnxruntime backend (CPU execution provider; the same code runs on aarch64 builds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlm_export.errors import BackendError
from vlm_export.manifest import GraphInfo
from vlm_export.runtimes.backends.base import Backend, Graph, register_backend


class OrtGraph(Graph):
    def __init__(self, session) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outputs))


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    def __init__(self, threads: int | None = None, device: str = "CPU") -> None:
        super().__init__(threads, device)
        try:
            import onnxruntime
        except ImportError as exc:  # pragma: no cover - onnxruntime is a base dependency
            raise BackendError("onnxruntime is not installed", fix="pip install onnxruntime") from exc
        if device.upper() != "CPU":
            raise BackendError(f"the onnxruntime backend runs on CPU only, not {device!r}")
        self.ort = onnxruntime

    def _options(self):
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        return options

    def load(self, path: Path, info: GraphInfo) -> Graph:
        try:
            session = self.ort.InferenceSession(str(path), self._options(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime cannot load {path.name}: {exc}".splitlines()[0]) from exc
        return OrtGraph(session)

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "version": self.ort.__version__, "device": "CPU"}
