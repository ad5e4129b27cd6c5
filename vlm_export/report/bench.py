"""``vlm-export bench``: time every stage of several configurations in one run and compare them.

Each configuration (an exported folder on a backend, PyTorch eager, or the optimum-intel peer) runs in a
fresh subprocess (:mod:`vlm_export.report.worker`) so that its peak memory is its own; all of them see
the same image and prompt. The report (schema :data:`SCHEMA_VERSION`) holds medians and p90s per stage,
the environment, a memory-bandwidth probe and ratios against a baseline (PyTorch when it is compared,
else the first configuration) and, when optimum-intel runs, against its configuration of the same
weight precision (``ratios_vs_peer``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vlm_export.errors import VLMExportError
from vlm_export.sample_images import sample_image

SCHEMA_VERSION = 1
# Stages of one request in pipeline order; "other" is the rest of the end-to-end time (loop glue).
STAGES = (
    "preprocess",
    "tokenize",
    "vision_encoder",
    "projector",
    "embed",
    "merge",
    "prefill",
    "sample",
    "decode",
    "detokenize",
)
METRICS = ("ttft", "decode_tokens_per_s", "decode_s_per_token", "total")
DEFAULT_PROMPT = "Describe the image."
FILLER = " Describe every object, its colour, its size and where it is in the picture."


@dataclass
class BenchSettings:
    threads: int = 2
    image_size: tuple[int, int] = (512, 512)
    prompt_tokens: int | None = None
    new_tokens: int = 64
    runs: int = 5
    warmup: int = 1
    backends: list[str] = field(default_factory=lambda: ["onnxruntime"])
    compare_pytorch: str | None = None
    compare_optimum_intel: str | None = None  # checkpoint to export with optimum-cli and run as the peer
    optimum_weights: list[str] = field(default_factory=lambda: ["fp32", "int8"])


def optimum_intel_export(checkpoint: str, weights: str, cache: Path, progress: Callable[[str], None]) -> Path:
    """``optimum-cli export openvino --task image-text-to-text --weight-format W`` once, cached."""
    import time

    out = cache / f"optimum-intel-{weights}"
    stamp = {"checkpoint": str(Path(checkpoint).resolve()), "weights": weights}
    if (out / "openvino_language_model.xml").is_file():
        try:
            recorded = json.loads((out / "vlm_export_bench.json").read_text())
        except (OSError, ValueError):
            recorded = {}
        if all(recorded.get(k) == v for k, v in stamp.items()):
            return out
        shutil.rmtree(out)  # another checkpoint's peer: export again
    cli = shutil.which("optimum-cli", path=str(Path(sys.executable).parent)) or shutil.which("optimum-cli")
    if cli is None:
        raise VLMExportError("optimum-intel is not installed", fix='pip install "vlm-export[peers]"')
    progress(f"exporting the peer with optimum-intel ({weights})")
    tmp = cache / f".optimum-intel-{weights}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.run(
        [cli, "export", "openvino", "--model", checkpoint, "--task", "image-text-to-text", "--weight-format", weights,
         str(tmp)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise VLMExportError(f"optimum-cli export failed: {lines[-1] if lines else proc.returncode}")
    (tmp / "vlm_export_bench.json").write_text(json.dumps({**stamp, "export_s": time.perf_counter() - started}))
    tmp.rename(out)
    return out


def precision_class(config: dict[str, Any]) -> str:
    """The decoder's weight precision, the axis peers are compared on (fp32, fp16, int8, int4)."""
    if config["kind"] == "optimum-intel":
        return config["backend"]["weights"]
    decoder = config.get("decoder_precision", "fp32")
    return "int4" if decoder.startswith("int4") else decoder


def build_prompt(tokenizer_file: Path, prompt_tokens: int | None) -> str:
    """The default question, lengthened with filler text to ``prompt_tokens`` text tokens if asked."""
    if not prompt_tokens:
        return DEFAULT_PROMPT
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    text = DEFAULT_PROMPT
    while len(tokenizer.encode(text, add_special_tokens=False).ids) < prompt_tokens:
        text += FILLER
    ids = tokenizer.encode(text, add_special_tokens=False).ids[:prompt_tokens]
    return tokenizer.decode(ids)


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "p90": float(np.percentile(arr, 90))}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians and p90s of every stage and metric over the measured runs."""
    runs = raw["runs"]
    out: dict[str, Any] = {"load_s": raw["load"], "peak_rss_mb": raw["peak_rss_mb"], "stages": {}, "metrics": {}}
    for run in runs:
        run["other"] = run["total"] - sum(run.get(stage, 0.0) for stage in STAGES)
    for stage in (*STAGES, "other"):
        values = [run[stage] for run in runs if stage in run]
        if values:
            out["stages"][stage] = _stats(values)
    for metric in METRICS:
        values = [run[metric] for run in runs if metric in run]
        if values:
            out["metrics"][metric] = _stats(values)
    out["prompt_tokens"] = runs[0]["prompt_tokens"] if runs else None
    out["decode_tokens"] = runs[0].get("decode_tokens") if runs else None
    return out


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "vlm_export.report.worker", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"worker exited with {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_precision(graph, backend: str) -> str:
    """The precision of what ``backend`` runs: OpenVINO runs the graph's IR where there is one."""
    ir = graph.openvino if backend == "openvino" else None
    return ir["precision"] if ir else graph.precision


def _graph_sizes(folder: Path, backend: str) -> tuple[dict[str, float], dict[str, str], float]:
    """Sizes and precisions of the files the backend really runs (OpenVINO: the IR where there is one)."""
    from vlm_export.manifest import Manifest

    manifest = Manifest.load(folder)
    sizes, precisions = {}, {}
    for role, graph in manifest.graphs.items():
        ir = graph.openvino if backend == "openvino" else None
        files = list(ir["sha256"]) if ir else graph.files
        sizes[role] = sum((Path(folder) / name).stat().st_size for name in files) / 1e6
        precisions[role] = _run_precision(graph, backend)
    return sizes, precisions, sizes["decoder"] * 1e6


def _ratios(config: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Speed-ups over the baseline (> 1 is better) and the memory ratio (< 1 is better)."""

    def median(cfg: dict, metric: str) -> float | None:
        return cfg.get("metrics", {}).get(metric, {}).get("median")

    out = {}
    for metric in ("ttft", "total"):
        ours, base = median(config, metric), median(baseline, metric)
        if ours and base:
            out[f"{metric}_speedup"] = base / ours
    ours, base = median(config, "decode_tokens_per_s"), median(baseline, "decode_tokens_per_s")
    if ours and base:
        out["decode_speedup"] = ours / base
    if config.get("peak_rss_mb") and baseline.get("peak_rss_mb"):
        out["peak_rss_ratio"] = config["peak_rss_mb"] / baseline["peak_rss_mb"]
    return out


def attach_ratios(configurations: list[dict[str, Any]]) -> str | None:
    """Ratios against the first working configuration (the baseline, whose name is returned) and, for
    our configurations, against the optimum-intel one with the same decoder weight precision."""
    ok = [c for c in configurations if "error" not in c]
    if not ok:
        return None
    for config in ok:
        config["ratios"] = _ratios(config, ok[0])
    peers = {precision_class(c): c for c in ok if c["kind"] == "optimum-intel"}
    for config in ok:
        peer = peers.get(precision_class(config)) if config["kind"] == "vlm-export" else None
        if peer is not None:
            config["ratios_vs_peer"] = {"peer": peer["name"], **_ratios(config, peer)}
    return ok[0]["name"]


def run_bench(
    folders: list[Path],
    settings: BenchSettings,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every configuration, write ``report.json``, ``report.md`` and ``chart.png`` to ``out_dir``."""
    from vlm_export.manifest import Manifest
    from vlm_export.report.bandwidth import measure_bandwidth
    from vlm_export.report.environment import environment
    from vlm_export.report.render import write_outputs

    step = progress or (lambda _m: None)
    if not folders:
        raise VLMExportError("bench needs at least one exported folder")
    # FOLDER@BACKEND runs a folder on that backend only (an OpenVINO IR folder on openvino, say)
    folder_backends = []
    parsed = []
    for folder in folders:
        path, at, backend = str(folder).rpartition("@")
        if at and backend in ("onnxruntime", "openvino"):
            parsed.append(Path(path))
            folder_backends.append([backend])
        else:
            parsed.append(Path(folder))
            folder_backends.append(None)
    folders = parsed
    manifests = [Manifest.load(folder) for folder in folders]  # clear errors before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    image_path = out_dir / "bench_image.png"
    sample_image(*settings.image_size).save(image_path)
    prompt = build_prompt(Path(folders[0]) / manifests[0].text.tokenizer_file, settings.prompt_tokens)
    common = {
        "image": str(image_path),
        "prompt": prompt,
        "threads": settings.threads,
        "new_tokens": settings.new_tokens,
        "runs": settings.runs,
        "warmup": settings.warmup,
    }
    step("measuring memory bandwidth")
    bandwidth = measure_bandwidth(settings.threads)

    specs: list[tuple[str, dict[str, Any]]] = []
    if settings.compare_pytorch:
        specs.append(("pytorch eager fp32", {**common, "kind": "pytorch", "model": settings.compare_pytorch}))
    if settings.compare_optimum_intel:
        for weights in settings.optimum_weights:
            ov_dir = optimum_intel_export(settings.compare_optimum_intel, weights, out_dir / "peers", step)
            spec = {**common, "kind": "optimum-intel", "model": str(ov_dir), "weights": weights,
                    "processor": settings.compare_optimum_intel}  # fmt: skip
            specs.append((f"optimum-intel ({weights} weights, f32 hint)", spec))
    for folder, manifest, backends in zip(folders, manifests, folder_backends):
        for backend in backends or settings.backends:
            precisions = {role: _run_precision(graph, backend) for role, graph in manifest.graphs.items()}
            name = f"{Path(folder).name} ({backend}, {'/'.join(sorted(set(precisions.values())))})"
            spec = {**common, "kind": "vlm-export", "folder": str(folder), "backend": backend,
                    "decoder_precision": precisions["decoder"]}  # fmt: skip
            specs.append((name, spec))

    configurations = []
    for name, spec in specs:
        step(f"running {name}")
        raw = _run_worker(spec)
        config: dict[str, Any] = {"name": name, "kind": spec["kind"]}
        if "decoder_precision" in spec:
            config["decoder_precision"] = spec["decoder_precision"]
        if "error" in raw:
            config["error"] = raw["error"]
            configurations.append(config)
            continue
        config.update(summarize(raw))
        config["backend"] = raw["backend_info"]
        config["runs_raw"] = raw["runs"]
        if spec["kind"] == "vlm-export":
            sizes, precisions, decoder_bytes = _graph_sizes(Path(spec["folder"]), spec["backend"])
            config.update(folder=spec["folder"], graph_mb=sizes, precision=precisions)
            tok_s = config["metrics"].get("decode_tokens_per_s", {}).get("median")
            if tok_s:
                config["roofline"] = {
                    "decoder_bytes_per_token": decoder_bytes,
                    "bandwidth_gb_per_s": bandwidth["gb_per_s"],
                    "fraction": decoder_bytes * tok_s / bandwidth["bytes_per_s"],
                }
        configurations.append(config)

    baseline = attach_ratios(configurations)
    report = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {**asdict(settings), "image_size": list(settings.image_size), "prompt": prompt},
        "environment": environment(),
        "bandwidth": bandwidth,
        "baseline": baseline,
        "configurations": configurations,
        "recommended": recommend(configurations),
    }
    write_outputs(report, out_dir)
    return report


def recommend(configurations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Which of our backends to use on this CPU: per decoder precision run on more than one backend, the
    fastest decode and the fastest time to first token; overall, the backend with the most decode wins
    (then TTFT wins), or None on a tie."""
    ours = [c for c in configurations if c["kind"] == "vlm-export" and "error" not in c]
    by_precision: dict[str, list[dict[str, Any]]] = {}
    for config in ours:
        by_precision.setdefault(precision_class(config), []).append(config)
    per_precision = {}
    wins: dict[str, list[int]] = {}  # backend -> [decode wins, TTFT wins]
    for precision, group in by_precision.items():
        if len({c["backend"]["backend"] for c in group}) < 2:
            continue
        decode = max(group, key=lambda c: c["metrics"].get("decode_tokens_per_s", {}).get("median") or 0.0)
        ttft = min(group, key=lambda c: c["metrics"].get("ttft", {}).get("median") or float("inf"))
        per_precision[precision] = {"decode": decode["name"], "ttft": ttft["name"]}
        for slot, winner in enumerate((decode, ttft)):
            wins.setdefault(winner["backend"]["backend"], [0, 0])[slot] += 1
    if not per_precision:
        return None
    ranked = sorted(wins.items(), key=lambda item: item[1], reverse=True)  # decode wins first, then TTFT
    tied = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
    return {"backend": None if tied else ranked[0][0], "per_precision": per_precision}
