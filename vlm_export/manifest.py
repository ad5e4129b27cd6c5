"""The manifest: the only contract between the exporter and the runtime.

``manifest.json`` in an exported folder says everything the torch-free runtime needs: which file is
which graph and what it eats and returns, how images are preprocessed and laid into the prompt, the
special tokens and chat template, and where the export came from. The runtime reads nothing else from
the source model. This module imports only the standard library so both sides can share it.

Bump :data:`FORMAT_VERSION` when a change would make an older runtime misread a newer folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlm_export.errors import ManifestError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

# Graph roles, in pipeline order. A family may leave out vision/projector (encoder-free models).
VISION_ENCODER = "vision_encoder"
PROJECTOR = "projector"
EMBED_TOKENS = "embed_tokens"
DECODER = "decoder"
GRAPH_ROLES = (VISION_ENCODER, PROJECTOR, EMBED_TOKENS, DECODER)


@dataclass
class TensorInfo:
    """One graph input or output. Dynamic axes are strings (``"batch"``), static ones integers."""

    name: str
    dtype: str
    shape: list[int | str]


@dataclass
class GraphInfo:
    """One exported graph: its files (the .onnx plus any external-data file) and their hashes."""

    file: str
    sha256: dict[str, str]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    precision: str = "fp32"
    opset: int | None = None
    summary: str = ""
    quantization: dict[str, Any] | None = None  # recipe asked for and what each op type got
    # the OpenVINO IR of this graph, when `vlm-export to-openvino` made one:
    # {"file": "openvino/decoder.xml", "sha256": {file: hash}, "precision": ..., "compression": {...}}
    openvino: dict[str, Any] | None = None
    # the decoder's onnxruntime variant (export/ort_kv.py): attention over an in-place KV buffer.
    # {"file": "decoder.kv.onnx", "sha256": {file: hash}, "kv_cache": "shared-buffer", "batch": 1, ...}
    onnxruntime: dict[str, Any] | None = None

    @property
    def files(self) -> list[str]:
        return list(self.sha256)

    @property
    def all_files(self) -> dict[str, str]:
        """Every file of this graph with its hash: ONNX, external data, and the OpenVINO IR if any."""
        variants = [v.get("sha256") or {} for v in (self.openvino, self.onnxruntime) if v]
        return {**self.sha256, **{name: digest for v in variants for name, digest in v.items()}}


@dataclass
class ImageTokens:
    """How an image appears in the prompt.

    ``placeholder`` is what a user or chat template writes once per image; the image's preprocessor
    expands it into the text the HF processor would produce (for LLaVA, ``tokens_per_tile`` copies of
    the image token). The runtime then scatters the projector's rows into the positions of
    ``token_id``, in order.
    """

    placeholder: str
    token: str
    token_id: int
    tokens_per_tile: int
    max_images: int | None = None  # per prompt, where the HF processor takes no more (BLIP-2, Fuyu: 1)


@dataclass
class DecoderInfo:
    """What the runtime needs to build an empty KV cache and feed the decoder."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    max_positions: int | None = None
    num_heads: int | None = None  # query heads (None in manifests written before it was recorded)
    kv_dtype: str = "float32"
    logits: str = "last"  # "last": the graph returns logits for the last position only


@dataclass
class TextInfo:
    """Tokenizer file, special tokens and prompt formatting, as the HF tokenizer/processor had them."""

    tokenizer_file: str
    special_tokens: dict[str, Any]
    bos_token: str | None
    eos_token_ids: list[int]
    pad_token_id: int | None
    chat_template: str | None
    clean_up_tokenization_spaces: bool = False
    # How a prompt is assembled when the model has no chat template, as its HF processor does it with
    # ``text=``: a list of "images" (every image's prompt text, no special tokens), "text" (the prompt with
    # the tokenizer's special tokens), "text-plain" (without them) and "token:NAME" (one token by name).
    # BLIP-2: ["images", "text"]; Fuyu: ["images", "token:<s>", "text-plain", "token:<0x04>"].
    prompt_layout: list[str] | None = None


@dataclass
class SourceInfo:
    model: str
    architecture: str
    model_type: str
    libraries: dict[str, str] = field(default_factory=dict)
    created: str = ""


@dataclass
class Manifest:
    family: str
    graphs: dict[str, GraphInfo]
    image: ImageTokens | None
    preprocessing: dict[str, Any] | None
    decoder: DecoderInfo
    text: TextInfo
    source: SourceInfo
    validation: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None  # the --quant spec and the fp32 folder it came from
    format_version: int = FORMAT_VERSION

    # ---- reading and writing -------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def save(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        tmp = path.with_name(f".{MANIFEST_NAME}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader sees the old manifest or the new one, never half of one
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            version = int(data.get("format_version", -1))
        except (TypeError, ValueError):
            raise ManifestError("manifest.json has no valid format_version") from None
        if version > FORMAT_VERSION:
            raise ManifestError(
                f"manifest format {version} is newer than this vlm-export understands ({FORMAT_VERSION})",
                fix="upgrade vlm-export, or re-export the model with this version",
            )
        if version < 1:
            raise ManifestError(f"manifest format {version} is not a vlm-export format")
        try:
            return cls(
                family=data["family"],
                graphs={role: _graph_from_dict(g) for role, g in data["graphs"].items()},
                image=ImageTokens(**data["image"]) if data.get("image") else None,
                preprocessing=data.get("preprocessing"),
                decoder=_known(DecoderInfo, data["decoder"]),
                text=TextInfo(**data["text"]),
                source=SourceInfo(**data["source"]),
                validation=data.get("validation"),
                quantization=data.get("quantization"),
                format_version=version,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(
                f"manifest.json is malformed ({type(exc).__name__}: {exc})",
                fix="re-export the model with `vlm-export convert`",
            ) from None

    @classmethod
    def load(cls, folder: Path | str) -> Manifest:
        folder = Path(folder)
        if not folder.is_dir():
            raise ManifestError(f"{folder} is not a folder", fix="pass the output folder of `vlm-export convert`")
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(
                f"no {MANIFEST_NAME} in {folder}: not a vlm-export folder",
                fix="run `vlm-export convert MODEL OUT` and pass OUT",
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read {path}: {exc}", fix="re-export the model") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{path} is not a JSON object", fix="re-export the model")
        return cls.from_dict(data)

    # ---- checks ----------------------------------------------------------------------------------
    def verify_files(self, folder: Path | str, check_hashes: bool = True) -> None:
        """Fail with a clear message if a graph file is missing, truncated or altered.

        Presence is always checked; hashing reads every byte, so it can be turned off for fast loads of
        a folder that is known to be intact.
        """
        folder = Path(folder)
        for role, graph in self.graphs.items():
            for name, expected in graph.all_files.items():
                path = folder / name
                if not path.is_file():
                    raise ManifestError(
                        f"{role} graph file {name} is missing from {folder}",
                        fix="copy the whole exported folder, or re-export",
                    )
                if check_hashes and sha256_file(path) != expected:
                    raise ManifestError(
                        f"{name} does not match the sha256 in manifest.json (changed or corrupted)",
                        fix="re-export the model, or copy the folder again",
                    )

    def graph(self, role: str) -> GraphInfo:
        try:
            return self.graphs[role]
        except KeyError:
            raise ManifestError(f"this export has no {role} graph") from None


def _known(cls, data: dict[str, Any]):
    """``cls`` from ``data``, ignoring keys a newer vlm-export added (optional keys need no format bump)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def _graph_from_dict(data: dict[str, Any]) -> GraphInfo:
    data = dict(data)
    data["inputs"] = [TensorInfo(**t) for t in data["inputs"]]
    data["outputs"] = [TensorInfo(**t) for t in data["outputs"]]
    known = {f.name for f in dataclasses.fields(GraphInfo)}
    return GraphInfo(**{k: v for k, v in data.items() if k in known})


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
