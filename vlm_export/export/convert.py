"""``convert``: a Hugging Face checkpoint in, a self-contained exported folder out.

Steps: resolve the source, pick its family, load it in fp32, export each graph, write the tokenizer,
config and manifest, run the parity gate, and only then move the folder into place.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vlm_export.errors import ModelLoadError, ParityError
from vlm_export.export import source as sources
from vlm_export.export.atomic import atomic_folder, check_output
from vlm_export.export.onnx_export import DEFAULT_OPSET, export_graph
from vlm_export.manifest import DECODER, FORMAT_VERSION, DecoderInfo, GraphInfo, Manifest, SourceInfo, TextInfo
from vlm_export.models import family_for
from vlm_export.models.base import VLMFamily
from vlm_export.report.environment import library_versions

Progress = Callable[[str], None]
EXPORT_LIBRARIES = ("vlm-export", "torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers")

# The exporter logs a warning per torchvision op it cannot find; torchvision is deliberately absent.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


@dataclass
class ConvertResult:
    folder: Path
    manifest: Manifest
    validation: Any | None  # ValidationReport, or None with validate=False


def _eos_ids(files: sources.SourceFiles) -> list[int]:
    eos = getattr(files.generation_config, "eos_token_id", None) if files.generation_config else None
    if eos is None:
        eos = files.tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _chat_template(files: sources.SourceFiles) -> str | None:
    template = getattr(files.processor, "chat_template", None) or getattr(files.tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template


def text_info(files: sources.SourceFiles, prompt_layout: list[str] | None = None) -> TextInfo:
    tok = files.tokenizer
    special = {k: v for k, v in tok.special_tokens_map.items()}
    return TextInfo(
        tokenizer_file="tokenizer.json",
        special_tokens=special,
        bos_token=tok.bos_token,
        eos_token_ids=_eos_ids(files),
        pad_token_id=tok.pad_token_id,
        chat_template=_chat_template(files),
        clean_up_tokenization_spaces=bool(getattr(tok, "clean_up_tokenization_spaces", False)),
        prompt_layout=prompt_layout,
    )


def convert(
    model: str,
    out: str | Path,
    overwrite: bool = False,
    validate: bool = True,
    opset: int = DEFAULT_OPSET,
    progress: Progress | None = None,
    quant: Any | None = None,
) -> ConvertResult:
    """Export ``model`` (a folder or hub id) to ``out``. Raises :class:`ParityError` if the gate fails.

    ``quant`` (a :class:`~vlm_export.quantize.spec.QuantSpec`) compresses the graphs after the fp32
    export passed the gate. On any failure nothing is written at ``out`` (an existing folder there is
    left as it was).
    """
    if quant is not None:
        return _convert_quantized(model, Path(out), overwrite, validate, opset, progress, quant)
    step = progress or (lambda _msg: None)
    out = Path(out)
    check_output(out, overwrite)  # fail before the expensive part
    source = sources.resolve(model)
    config = sources.load_config(source)
    family_cls = family_for(config)

    step(f"loading {family_cls.name} checkpoint")
    try:
        family = family_cls.load(source)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the weights of {model}: {str(exc).splitlines()[0]}") from None
    files = sources.load_processor(source, family_cls)
    image_tokens = family.image_tokens(files.processor)
    if image_tokens.token_id >= family.decoder_info().vocab_size:
        raise ModelLoadError(f"image token id {image_tokens.token_id} is outside the decoder's vocabulary")

    with atomic_folder(out, overwrite) as tmp:
        graphs = {}
        exports = family.graph_exports()
        for graph in exports:
            step(f"exporting {graph.role}")
            graphs[graph.role] = export_graph(graph, tmp, opset=opset)
        if not _sliding_window(family.text_config):  # GroupQueryAttention here would attend to everything
            graphs[DECODER] = with_ort_variant(tmp, graphs[DECODER], family.decoder_info())
        files.tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        _copy_configs(source, family, tmp)
        manifest = Manifest(
            family=family.name,
            graphs=graphs,
            image=image_tokens,
            preprocessing=family.preprocessing(files.processor),
            decoder=family.decoder_info(),
            text=text_info(files, family.prompt_layout(files.processor)),
            source=SourceInfo(
                model=model,
                architecture=(config.architectures or [type(family.model).__name__])[0],
                model_type=config.model_type,
                libraries=library_versions(EXPORT_LIBRARIES),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            ),
            format_version=FORMAT_VERSION,
        )
        manifest.save(tmp)
        report = None
        if validate:
            step("validating against transformers")
            report = _validate(family, exports, tmp)
            manifest.validation = report.as_dict()
            manifest.save(tmp)
            if not report.passed:
                error = ParityError(
                    "the export does not match transformers: " + _failure_summary(report),
                    fix="nothing was written; pass --no-validate to keep the export anyway",
                )
                error.report = report
                raise error
    return ConvertResult(folder=out, manifest=manifest, validation=report)


def _convert_quantized(model, out: Path, overwrite, validate, opset, progress, quant) -> ConvertResult:
    import tempfile

    from vlm_export.quantize.apply import quantize_folder

    check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.fp32-") as tmp:
        fp32 = convert(model, Path(tmp) / "fp32", validate=validate, opset=opset, progress=progress)
        manifest = quantize_folder(fp32.folder, out, quant, overwrite=overwrite, progress=progress)
        manifest.validation = fp32.manifest.validation  # the fp32 gate this export passed
        manifest.quantization["source"] = "fp32 export of " + model
        manifest.save(out)
    return ConvertResult(folder=out, manifest=manifest, validation=fp32.validation)


def _sliding_window(text_config: Any) -> bool:
    """Whether the decoder masks attention to a window (Mistral-style configs, Qwen2 with it on)."""
    window = getattr(text_config, "sliding_window", None)
    return bool(window) and getattr(text_config, "use_sliding_window", True) is not False


def with_ort_variant(folder: Path, info: GraphInfo, decoder: DecoderInfo) -> GraphInfo:
    """The decoder plus its onnxruntime in-place-KV variant (see export/ort_kv.py), when it applies."""
    from vlm_export.export.ort_kv import add_shared_kv_variant

    if decoder.num_heads is None:
        return info
    return add_shared_kv_variant(folder, info, decoder.num_heads, decoder.num_kv_heads, decoder.head_dim)


def _copy_configs(source: str, family: VLMFamily, folder: Path) -> None:
    local = Path(source)
    if local.is_dir() and (local / "config.json").is_file():
        shutil.copyfile(local / "config.json", folder / "config.json")
    else:
        (folder / "config.json").write_text(json.dumps(family.config.to_dict(), indent=2) + "\n")


def _validate(family: VLMFamily, exports, folder: Path):
    from vlm_export.export.validate import ValidationReport, compare_generation, compare_graph
    from vlm_export.manifest import Manifest as _Manifest
    from vlm_export.runtimes.backends import create_backend

    manifest = _Manifest.load(folder)
    backend = create_backend("onnxruntime", kv_cache="explicit")  # graph by graph, with explicit past inputs
    report = ValidationReport()
    for graph in exports:
        loaded = backend.load(folder / manifest.graphs[graph.role].file, manifest.graphs[graph.role])
        report.graphs.append(compare_graph(graph, loaded.run))
    report.generation = compare_generation(family, folder)
    return report


def _failure_summary(report) -> str:
    bad = [
        f"{g.role} (max abs diff {g.max_abs_diff:.2e}, cosine {g.cosine:.6f})" for g in report.graphs if not g.passed
    ]
    gen = report.generation
    if gen is not None and not gen.passed:
        bad.append(f"generation differs at token {gen.first_mismatch}")
    return "; ".join(bad)
