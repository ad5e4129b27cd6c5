"""`make test-arm`: the same generations on x86 and on emulated ARM CPUs, compared.

Exports the tiny test models on x86 (cached) in fp32 and the int8 / int4 presets, then runs
scripts/arm/generate.py with the host's runtime and, under qemu user-mode emulation, with the aarch64
environment that setup.sh built, once per CPU model. fp32 must give identical token ids and logits equal
to float rounding; quantized graphs must keep logits within a stated tolerance, and their token agreement
is reported. The table and a JSON report go to stdout and .cache/arm/report.json. Exit status 1 when a
check fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ARM_CACHE", ROOT / ".cache" / "arm"))
# (qemu -cpu name, MIDR part number, /proc/cpuinfo Features): one core without the dot-product
# extension, one with it. The fake cpuinfo must match the emulated CPU (see shared/arm-notes.md).
CPU_MODELS = {
    "cortex-a72": ("0xd08", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
    "neoverse-n1": (
        "0xd0c",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs",
    ),
}
MODELS = ("llava-llama-gqa", "llava-qwen2-full")
# Quantized presets of the default tiny model. Their int8 arithmetic (dynamic int8 MatMul; int4 with
# accuracy level 4 computes in int8) uses different kernels on x86 (AVX2/VNNI) and ARM (NEON/dot-product),
# so only the logits are held to a tolerance, and token agreement is reported, not required.
QUANT_PRESETS = ("int8", "int4")
PROMPTS = ("Describe the image.", "What colour is the largest circle?", "How many circles are there?")
NEW_TOKENS = 16
# logits may differ by float rounding between kernels (x86 AVX vs ARM NEON): relative to max |logit|
FP32_LOGIT_RTOL = 1e-4
INT8_LOGIT_RTOL = 5e-2


def export_models() -> list[str]:
    from vlm_export.export.convert import convert
    from vlm_export.models import families

    tiny = {t.name: t for f in families().values() for t in f.tiny_checkpoints()}
    folders = []
    for name in MODELS:
        checkpoint, out = CACHE / "checkpoints" / name, CACHE / "exports" / f"{name}-fp32"
        if not (checkpoint / "config.json").is_file():
            tiny[name].build(checkpoint, 0)
        if not (out / "manifest.json").is_file():
            convert(str(checkpoint), out, overwrite=True)
        folders.append(str(out))
    from vlm_export.quantize.apply import quantize_folder
    from vlm_export.quantize.spec import PRESETS

    for preset in QUANT_PRESETS:
        out = CACHE / "exports" / f"{MODELS[0]}-{preset}"
        if not (out / "manifest.json").is_file():
            quantize_folder(folders[0], out, PRESETS[preset], overwrite=True)
        folders.append(str(out))
    return folders


def write_cpuinfo(part: str, features: str) -> None:
    block = (
        "processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 0\n\n"
    )
    text = "".join(block.format(i=i, features=features, part=part) for i in range(2))
    (CACHE / "rootfs" / "proc").mkdir(parents=True, exist_ok=True)
    (CACHE / "rootfs" / "proc" / "cpuinfo").write_text(text)


def run(command: list[str], spec: dict, env: dict | None = None) -> dict:
    proc = subprocess.run([*command, json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    from vlm_export.sample_images import sample_image

    folders = export_models()
    cases = []
    for i, prompt in enumerate(PROMPTS):
        image = CACHE / f"case{i}.png"
        sample_image(96 + 16 * i, 80, seed=i).save(image)
        cases.append({"prompt": prompt, "image": str(image)})
    spec = {"folders": folders, "cases": cases, "new_tokens": NEW_TOKENS}
    script = str(ROOT / "scripts" / "arm" / "generate.py")

    outputs = {"x86_64 (host)": run([sys.executable, script], spec)}
    python = CACHE / "rootfs" / "usr" / "bin" / "python3.11"
    for cpu, (part, features) in CPU_MODELS.items():  # sequential: one rootfs, one cpuinfo at a time
        write_cpuinfo(part, features)
        command = [
            "qemu-aarch64-static", "-cpu", cpu, "-L", str(CACHE / "rootfs"),
            "-E", f"PYTHONPATH={CACHE / 'site'}", "-E", "PYTHONDONTWRITEBYTECODE=1", str(python), script,
        ]  # fmt: skip
        start = time.perf_counter()
        outputs[f"aarch64 {cpu}"] = run(command, spec)
        outputs[f"aarch64 {cpu}"]["wall_seconds"] = time.perf_counter() - start

    reference = outputs["x86_64 (host)"]
    rows, failures = [], []
    for machine, out in outputs.items():
        for folder in folders:
            ref_runs, runs = reference["results"][folder]["runs"], out["results"][folder]["runs"]
            same = sum(a["tokens"] == b["tokens"] for a, b in zip(ref_runs, runs))
            agree = np.mean([np.mean(np.equal(a["tokens"], b["tokens"])) for a, b in zip(ref_runs, runs)])
            diff = max(float(np.max(np.abs(np.subtract(a["logits"], b["logits"])))) for a, b in zip(ref_runs, runs))
            scale = max(float(np.max(np.abs(a["logits"]))) for a in ref_runs)
            precision = "/".join(out["results"][folder]["precision"])
            exact = precision == "fp32"
            tolerance = (FP32_LOGIT_RTOL if exact else INT8_LOGIT_RTOL) * scale
            ok = diff <= tolerance and (same == len(runs) or not exact)
            rows.append(
                {
                    "machine": machine,
                    "isa": ", ".join(out["environment"]["cpu"]["isa"]),
                    "model": Path(folder).name,
                    "precision": precision,
                    "identical_generations": f"{same}/{len(runs)}",
                    "token_agreement": float(agree),
                    "max_logit_diff": diff,
                    "tolerance": tolerance,
                    "tokens_must_match": exact,
                    "seconds": out.get("wall_seconds", out["seconds"]),
                    "ok": ok,
                }
            )
            if not ok:
                failures.append(f"{machine} {Path(folder).name}")
    lines = [
        "| machine | ISA | model | precision | identical generations | token agreement | max logit diff "
        "| tolerance | seconds | ok |",
        "|---|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['machine']} | {r['isa']} | {r['model']} | {r['precision']} | {r['identical_generations']} | "
            f"{r['token_agreement']:.0%} | {r['max_logit_diff']:.2e} | {r['tolerance']:.1e} | {r['seconds']:.1f} | "
            f"{'yes' if r['ok'] else 'NO'} |"
        )
    print("\n".join(lines))
    (CACHE / "report.json").write_text(json.dumps({"rows": rows, "new_tokens": NEW_TOKENS}, indent=2) + "\n")
    if failures:
        print(f"error: x86 and ARM disagree for {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
