"""onnxruntime backend (CPU execution provider; the same code runs on aarch64 builds).

Decoders with an in-place-KV variant in the manifest (``GraphInfo.onnxruntime``, see
``export/ort_kv.py``) run it by default: the cache lives in preallocated buffers owned by the graph
(the pipeline's ``holds_kv_cache`` protocol, as with OpenVINO's stateful models), each step appends one
row in place and only the logits come back to numpy. ``kv_cache="explicit"`` keeps the portable graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlm_export.errors import BackendError
from vlm_export.manifest import DecoderInfo, GraphInfo
from vlm_export.runtimes.backends.base import Backend, Graph, register_backend


class OrtGraph(Graph):
    def __init__(self, session) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outputs))


class OrtSharedKVGraph(Graph):
    """The in-place-KV decoder variant: past and present are bound to the same buffers.

    Capacity starts at what the first call needs (rounded up to ``BLOCK`` rows) and doubles when a step
    would overflow it; growing copies the cache once.
    """

    holds_kv_cache = True
    BLOCK = 256

    def __init__(self, session, ort, num_layers: int, num_kv_heads: int, head_dim: int, dtype: str) -> None:
        self.session = session
        self.ort = ort
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.layout = (num_kv_heads, head_dim)
        self.dtype = np.dtype(dtype)
        self.names = [
            (f"past_key_values.{i}.{k}", f"present.{i}.{k}") for i in range(num_layers) for k in ("key", "value")
        ]
        self.buffers: dict[str, np.ndarray] = {}
        self.values: dict[str, object] = {}
        self.batch = 1
        self.length = 0
        self.binding = session.io_binding()

    def reset_kv_cache(self, batch: int = 1) -> None:
        if batch != 1:
            raise BackendError("the in-place KV decoder serves one sequence at a time", fix="use kv_cache='explicit'")
        self.length = 0

    def _ensure_capacity(self, needed: int) -> None:
        capacity = next(iter(self.buffers.values())).shape[2] if self.buffers else 0
        if needed <= capacity:
            return
        new_capacity = max(2 * capacity, -(-needed // self.BLOCK) * self.BLOCK)
        for past, _ in self.names:
            grown = np.zeros((self.batch, *self.layout[:1], new_capacity, self.layout[1]), dtype=self.dtype)
            if capacity:
                grown[:, :, : self.length] = self.buffers[past][:, :, : self.length]
            self.buffers[past] = grown
            self.values[past] = self.ort.OrtValue.ortvalue_from_numpy(grown)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        total = feeds["attention_mask"].shape[1]
        self._ensure_capacity(total)
        binding = self.binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        binding.bind_output("logits", "cpu")  # first bound output: get_outputs()[0]
        for past, present in self.names:
            binding.bind_ortvalue_input(past, self.values[past])
            binding.bind_ortvalue_output(present, self.values[past])
        self.session.run_with_iobinding(binding)
        self.length = total
        return {"logits": binding.get_outputs()[0].numpy()}


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    def __init__(self, threads: int | None = None, device: str = "CPU", kv_cache: str = "shared") -> None:
        super().__init__(threads, device)
        if kv_cache not in ("shared", "explicit"):
            raise BackendError(f"kv_cache must be 'shared' or 'explicit', not {kv_cache!r}")
        self.kv_cache = kv_cache
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

    def load(self, path: Path, info: GraphInfo, decoder: DecoderInfo | None = None) -> Graph:
        variant = info.onnxruntime if self.kv_cache == "shared" and decoder is not None else None
        if variant:
            session = self._session(path.parent / variant["file"])
            return OrtSharedKVGraph(
                session, self.ort, decoder.num_layers, decoder.num_kv_heads, decoder.head_dim, decoder.kv_dtype
            )
        return OrtGraph(self._session(path))

    def _session(self, path: Path):
        try:
            return self.ort.InferenceSession(str(path), self._options(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime cannot load {path.name}: {exc}".splitlines()[0]) from exc

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "version": self.ort.__version__, "device": "CPU", "kv_cache": self.kv_cache}
