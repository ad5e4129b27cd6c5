"""OpenVINO backend: the same exported folder, compiled by OpenVINO (CPU, and GPU/NPU where present).

A graph runs from its OpenVINO IR when ``vlm-export to-openvino`` recorded one in the manifest (that is
where NNCF weight compression lives), otherwise straight from the ONNX file through OpenVINO's ONNX
frontend. The KV cache stays explicit inputs/outputs, so the shared pipeline drives both backends alike.

Inference precision is f32 unless asked otherwise: OpenVINO's CPU default is bf16 on CPUs with
AVX512_BF16, which would make parity depend on the machine. ``precision="bf16"`` (or ``"f16"``) opts in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlm_export.errors import BackendError
from vlm_export.manifest import DecoderInfo, GraphInfo
from vlm_export.runtimes.backends.base import Backend, Graph, register_backend

PRECISIONS = {"f32", "bf16", "f16"}


def _first_line(exc: BaseException) -> str:
    """OpenVINO's messages start with C++ source locations; keep the first line that says something."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0][:300]


class OpenVINOGraph(Graph):
    def __init__(self, compiled, holds_kv_cache: bool = False) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        self.output_names = [o.get_any_name() for o in compiled.outputs]
        self.holds_kv_cache = holds_kv_cache

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # share_outputs=False (the default) copies: an explicit KV cache outlives the next request
        results = self.request.infer(feeds)
        return {name: results[port] for name, port in zip(self.output_names, self.compiled.outputs)}

    def reset_kv_cache(self, batch: int = 1) -> None:
        """Empty states of shape (batch, kv_heads, 0, head_dim): after a plain reset OpenVINO would size
        the dynamic batch axis 0 too."""
        import openvino

        for state in self.request.query_state():
            shape = list(state.state.shape)
            shape[0], shape[2] = batch, 0
            state.state = openvino.Tensor(np.zeros(shape, dtype=np.float32))


@register_backend("openvino")
class OpenVINOBackend(Backend):
    def __init__(
        self, threads: int | None = None, device: str = "CPU", precision: str = "f32", stateful: bool = True
    ) -> None:
        super().__init__(threads, device)
        try:
            import openvino
        except ImportError as exc:
            raise BackendError("the openvino backend needs OpenVINO", fix='pip install "vlm-export[openvino]"') from exc
        if precision not in PRECISIONS:
            raise BackendError(f"unknown OpenVINO precision {precision!r}; choose one of {sorted(PRECISIONS)}")
        self.ov = openvino
        self.core = openvino.Core()
        self.precision = precision
        self.stateful = stateful
        devices = self.core.available_devices
        virtual = device.split(":")[0].upper() in {"AUTO", "HETERO", "MULTI"}
        if not virtual and device.split(".")[0].upper() not in {d.split(".")[0] for d in devices}:
            raise BackendError(f"OpenVINO device {device!r} is not available here", fix=f"use one of {devices}")

    def config(self) -> dict[str, str]:
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.precision}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        return config

    def load(self, path: Path, info: GraphInfo, decoder: DecoderInfo | None = None) -> Graph:
        ir = (info.openvino or {}).get("file")
        source = path.parent / ir if ir else path
        stateful = self.stateful and any(t.name.startswith("past_key_values.") for t in info.inputs)
        try:
            model = self.core.read_model(str(source))
            compiled = self._compile(model, stateful)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long messages
            if ir is None:
                compiled = self._load_rewritten(path, exc, stateful)
            else:
                raise BackendError(f"OpenVINO cannot load {source.name}: {_first_line(exc)}") from exc
        return OpenVINOGraph(compiled, holds_kv_cache=stateful)

    def _compile(self, model, stateful: bool):
        """Stateful decoders keep their KV cache inside the compiled model (OpenVINO's MakeStateful):
        measured 2.7x faster decode than explicit cache inputs/outputs on the SmolVLM-256M shapes."""
        if stateful:
            from openvino._offline_transformations import apply_make_stateful_transformation

            names = [port.get_any_name() for port in model.inputs]
            pairs = {n: "present" + n[len("past_key_values") :] for n in names if n.startswith("past_key_values.")}
            apply_make_stateful_transformation(model, pairs)
        return self.core.compile_model(model, self.device, self.config())

    def _load_rewritten(self, path: Path, error: Exception, stateful: bool):
        """OpenVINO misreads grouped-query ``Attention`` in ONNX (see ``export.openvino_ir``): where the
        onnx package is installed, rewrite a copy on the fly; otherwise say how to make the IR once."""
        fix = f"add OpenVINO IR to the folder once: vlm-export to-openvino {path.parent}"
        try:
            from vlm_export.export.openvino_ir import openvino_model
        except ImportError:
            raise BackendError(f"OpenVINO cannot load {path.name}: {_first_line(error)}", fix=fix) from error
        import tempfile

        try:
            with tempfile.TemporaryDirectory() as scratch:
                model, rewritten = openvino_model(path, Path(scratch))
            if not rewritten:
                raise error
            return self._compile(model, stateful)
        except ImportError:  # no onnx package on this device
            raise BackendError(f"OpenVINO cannot load {path.name}: {_first_line(error)}", fix=fix) from error
        except Exception as exc:
            raise BackendError(f"OpenVINO cannot load {path.name}: {_first_line(exc)}", fix=fix) from exc

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "version": self.ov.get_version(),
            "device": self.device,
            "inference_precision": self.precision,
            "kv_cache": "stateful" if self.stateful else "explicit inputs/outputs",
        }
