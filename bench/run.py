"""Run a benchmark definition (a TOML file in this folder): build, convert, bench.

    python bench/run.py bench/standard.toml [bench/smolvlm.toml ...]

The checkpoint and its exports are cached under .cache/bench/<name>/; the report goes to
.cache/bench/<name>/report/ (report.json, report.md, chart.png). Set VLM_EXPORT_SHARED to point at
another copy of the shared configs folder.

[model] keys: name, config (a shared/configs folder), seed, preprocessor (overrides of its
preprocessor_config.json, e.g. { do_image_splitting = false }).

[run] keys: threads, image_size, new_tokens, runs, warmup; compare_pytorch (bool); variants (quantize
presets run on onnxruntime besides fp32); openvino_variants (to-openvino --quant presets, "fp32" for none,
run on the openvino backend); compare_optimum_intel (bool) and optimum_weights (its --weight-format list).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def main(definition: Path) -> int:
    spec = tomllib.loads(definition.read_text())
    model, run = spec["model"], spec["run"]
    config_dir = Path(model["config"])
    if os.environ.get("VLM_EXPORT_SHARED"):
        config_dir = Path(os.environ["VLM_EXPORT_SHARED"]) / "configs" / config_dir.name
    config_dir = config_dir if config_dir.is_absolute() else (ROOT / config_dir).resolve()
    if not (config_dir / "config.json").is_file():
        print(f"error: no config folder at {config_dir} (set VLM_EXPORT_SHARED)", file=sys.stderr)
        return 2
    work = ROOT / ".cache" / "bench" / model["name"]
    from vlm_export.testing.from_config import checkpoint_from_config

    print(f"· checkpoint {work / 'checkpoint'} (random weights, seed {model['seed']})", file=sys.stderr)
    checkpoint = checkpoint_from_config(
        config_dir, work / "checkpoint", seed=model["seed"], preprocessor=model.get("preprocessor")
    )
    stamp = export_stamp(model)
    fp32 = work / "fp32"
    cli = [sys.executable, "-m", "vlm_export"]
    if not _fresh(fp32, stamp):
        subprocess.run([*cli, "convert", str(checkpoint), str(fp32), "--overwrite"], check=True)
        _mark(fp32, stamp)
    folders = [str(fp32)]
    for preset in run.get("variants", []):
        folder = work / preset
        if not _fresh(folder, stamp):
            subprocess.run([*cli, "quantize", str(fp32), str(folder), "--quant", preset, "--overwrite"], check=True)
            _mark(folder, stamp)
        folders.append(str(folder))
    for preset in run.get("openvino_variants", []):
        folder = work / f"openvino-{preset}"
        if not _fresh(folder, stamp):
            quant = [] if preset == "fp32" else ["--quant", preset]
            subprocess.run([*cli, "to-openvino", str(fp32), str(folder), *quant, "--overwrite"], check=True)
            _mark(folder, stamp)
        folders.append(f"{folder}@openvino")
    command = [
        *cli,
        "bench",
        *folders,
        "--threads",
        str(run["threads"]),
        "--image-size",
        run["image_size"],
        "--new-tokens",
        str(run["new_tokens"]),
        "--runs",
        str(run["runs"]),
        "--warmup",
        str(run["warmup"]),
        "--out",
        str(work / "report"),
    ]
    if run.get("compare_pytorch"):
        command += ["--compare-pytorch", str(checkpoint)]
    if run.get("compare_optimum_intel"):
        command += ["--compare-optimum-intel", str(checkpoint), "--optimum-weights", ",".join(run["optimum_weights"])]
    return subprocess.run(command).returncode


STAMP = ".bench-stamp"
EXPORT_CODE = ("export", "quantize", "models")  # what an exported folder depends on


def export_stamp(settings: dict, parts: tuple[str, ...] = EXPORT_CODE) -> str:
    """Exports are reused only while the code that wrote them (``vlm_export/<part>/``) and the settings
    are unchanged."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for part in parts:
        for path in sorted((ROOT / "vlm_export" / part).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _fresh(folder: Path, stamp: str) -> bool:
    marker = folder / STAMP
    return (folder / "manifest.json").is_file() and marker.is_file() and marker.read_text() == stamp


def _mark(folder: Path, stamp: str) -> None:
    (folder / STAMP).write_text(stamp)


if __name__ == "__main__":
    definitions = [Path(arg) for arg in sys.argv[1:]] or [ROOT / "bench" / "standard.toml"]
    sys.exit(max(main(definition) for definition in definitions))
