"""Accuracy of every quantization recipe on the shipped model: size, per-graph cosine, token agreement,
task accuracy, on onnxruntime (quantize) and OpenVINO (to-openvino + NNCF).

    python bench/quant_accuracy.py [--n 500] [--out .cache/bench/quant-accuracy]

Writes report.md and report.json under --out; the fp32 export and every variant are cached there.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from run import EXPORT_CODE, export_stamp  # bench/run.py, beside this script

from vlm_export.export.convert import convert
from vlm_export.export.openvino_ir import to_openvino
from vlm_export.quantize.apply import quantize_folder
from vlm_export.quantize.report import compare_folders
from vlm_export.quantize.spec import parse_quant
from vlm_export.shapes import DEFAULT_MODEL
from vlm_export.shapes.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
ONNXRUNTIME = ["fp16", "int8", "int4", "decoder=int4:block=32,vision=int8,projector=int8,embed=int4", "int4-all"]
OPENVINO = ["fp32", "int8", "decoder=int4:block=32,vision=int8,projector=int8", "decoder=int4:block=128"]


def _folder_mb(folder: Path, files: list[str]) -> float:
    return sum((folder / name).stat().st_size for name in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "quant-accuracy")
    args = parser.parse_args()
    out: Path = args.out
    stamp = export_stamp({}, (*EXPORT_CODE, "shapes"))
    if (out / ".stamp").is_file() and (out / ".stamp").read_text() != stamp:
        shutil.rmtree(out)  # exports made by other code: measure the current one
    out.mkdir(parents=True, exist_ok=True)
    (out / ".stamp").write_text(stamp)
    fp32 = out / "fp32"
    if not (fp32 / "manifest.json").is_file():
        convert(DEFAULT_MODEL, fp32, overwrite=True)
    rows = []
    fp32_eval = evaluate(fp32, args.n)
    rows.append({"backend": "onnxruntime", "recipe": "fp32", "mb": None, "cosine": {}, "token_agreement": 1.0,
                 "accuracy": fp32_eval.exported.accuracy, "per_type": fp32_eval.exported.per_type})  # fmt: skip
    for i, spec in enumerate(ONNXRUNTIME):
        folder = out / f"ort-{i}"
        if not (folder / "manifest.json").is_file():
            quantize_folder(fp32, folder, parse_quant(spec), overwrite=True)
        report = compare_folders(fp32, folder, task_samples=args.n)
        rows.append(
            {
                "backend": "onnxruntime",
                "recipe": spec,
                "mb": report.total_mb,
                "fp32_mb": report.fp32_mb,
                "cosine": {g.role: g.cosine for g in report.graphs},
                "precision": {g.role: g.precision for g in report.graphs},
                "token_agreement": report.token_agreement,
                "accuracy": report.task.quantized,
                "per_type": report.task.quantized_per_type,
            }
        )
    for i, spec in enumerate(OPENVINO):
        folder = out / f"ov-{i}"
        if not (folder / "manifest.json").is_file():
            to_openvino(fp32, folder, None if spec == "fp32" else parse_quant(spec), overwrite=True)
        scored = evaluate(folder, args.n, backend="openvino").exported
        manifest = json.loads((folder / "manifest.json").read_text())
        ir_files = [name for g in manifest["graphs"].values() for name in g["openvino"]["sha256"]]
        rows.append(
            {
                "backend": "openvino",
                "recipe": spec,
                "mb": _folder_mb(folder, ir_files),
                "precision": {r: g["openvino"]["precision"] for r, g in manifest["graphs"].items()},
                "accuracy": scored.accuracy,
                "per_type": scored.per_type,
            }
        )
    (out / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"# Quantization accuracy on {DEFAULT_MODEL} ({args.n} held-out questions, exact answer %)",
        "",
        "| backend | recipe | MB (fp32 {:.2f}) | cosine vision / projector / embed / decoder | greedy tokens = fp32 "
        "| accuracy | colour | shape | count | position |".format(rows[1]["fp32_mb"]),
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    roles = ("vision_encoder", "projector", "embed_tokens", "decoder")
    for row in rows:
        cos = row.get("cosine") or {}
        cosine = " / ".join(f"{cos[r]:.4f}" for r in roles if r in cos) or "-"
        agree = "-" if row.get("token_agreement") is None else f"{row['token_agreement']:.0%}"
        size = "-" if row["mb"] is None else f"{row['mb']:.2f}"
        per_type = " | ".join(f"{row['per_type'].get(t, 0):.1f}" for t in ("colour", "shape", "count", "position"))
        accuracy = f"{row['accuracy']:.1f}"
        lines.append(
            f"| {row['backend']} | `{row['recipe']}` | {size} | {cosine} | {agree} | {accuracy} | {per_type} |"
        )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
