"""One benchmark configuration, run in its own process so peak memory is its own.

Invoked by :mod:`vlm_export.report.bench` as ``python -m vlm_export.report.worker SPEC_JSON``; prints one
JSON object on its last stdout line. Three kinds: ``vlm-export`` (the runtime; imports no torch),
``pytorch`` (transformers eager ``generate`` on the same image and prompt) and ``optimum-intel`` (the
peer: its OpenVINO export through ``OVModelForVisualCausalLM.generate``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def peak_rss_mb() -> float:
    """This process's high-water RSS. On Linux from VmHWM: ru_maxrss survives exec, so a worker would
    inherit its parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return kb / 1024 if sys.platform != "darwin" else kb / (1 << 20)


def run_exported(spec: dict[str, Any]) -> dict[str, Any]:
    from vlm_export.runtimes.pipeline import VLMPipeline

    start = time.perf_counter()
    # image_cache=0: every run encodes the image, as the peers do (the bench repeats one picture)
    pipe = VLMPipeline.from_pretrained(spec["folder"], backend=spec["backend"], threads=spec["threads"], image_cache=0)
    load_s = time.perf_counter() - start
    runs = []
    for i in range(spec["warmup"] + spec["runs"]):
        result = pipe.generate(
            spec["prompt"],
            [spec["image"]],
            max_new_tokens=spec["new_tokens"],
            min_new_tokens=spec["new_tokens"],
        )
        if i >= spec["warmup"]:
            runs.append({**result.timings, "prompt_tokens": result.prompt_tokens})
    return {"load": load_s, "runs": runs, "backend_info": pipe.describe(), "peak_rss_mb": peak_rss_mb()}


def run_pytorch(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForImageTextToText

    from vlm_export.models import family_for

    torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    model = AutoModelForImageTextToText.from_pretrained(spec["model"], dtype=torch.float32).eval()
    family = family_for(model.config)
    processor = family.load_processor(spec["model"])
    load_s = time.perf_counter() - start
    stage_times: dict[str, float] = {}
    for stage, module in family.stage_modules(model).items():
        _time_module(module, stage, stage_times)
    runs = _hf_generate_runs(model, processor, spec, stage_times)
    info = {"backend": "pytorch", "version": torch.__version__, "device": "CPU", "attention": "sdpa"}
    return {"load": load_s, "runs": runs, "backend_info": info, "peak_rss_mb": peak_rss_mb()}


def run_optimum_intel(spec: dict[str, Any]) -> dict[str, Any]:
    """The peer: optimum-intel's OpenVINO export driven by its own ``generate``, same image and prompt."""
    import openvino
    import torch
    from optimum.intel import OVModelForVisualCausalLM
    from optimum.intel.version import __version__ as optimum_intel_version
    from transformers import AutoConfig

    from vlm_export.models import family_for

    torch.set_num_threads(spec["threads"])
    ov_config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": spec.get("precision_hint", "f32"),
        "INFERENCE_NUM_THREADS": str(spec["threads"]),
        "CACHE_DIR": "",
    }
    start = time.perf_counter()
    model = OVModelForVisualCausalLM.from_pretrained(spec["model"], ov_config=ov_config, device="CPU")
    processor = family_for(AutoConfig.from_pretrained(spec["processor"])).load_processor(spec["processor"])
    load_s = time.perf_counter() - start
    runs = _hf_generate_runs(model, processor, spec, None)
    info = {
        "backend": "optimum-intel",
        "version": optimum_intel_version,
        "openvino": openvino.get_version(),
        "device": "CPU",
        "inference_precision": ov_config["INFERENCE_PRECISION_HINT"],
        "weights": spec.get("weights", "fp32"),
    }
    return {"load": load_s, "runs": runs, "backend_info": info, "peak_rss_mb": peak_rss_mb()}


def _hf_generate_runs(model, processor, spec: dict[str, Any], stage_times: dict[str, float] | None) -> list[dict]:
    """Timed ``model.generate`` runs with a streamer that timestamps every new token."""
    import torch
    from PIL import Image
    from transformers import GenerationConfig
    from transformers.generation.streamers import BaseStreamer

    from vlm_export.runtimes.text import user_message

    class Clock(BaseStreamer):
        """Timestamps each new token as generate hands it out (the first put is the prompt)."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.prompt_seen = False

        def put(self, value) -> None:
            if self.prompt_seen:
                self.times.append(time.perf_counter())
            self.prompt_seen = True

        def end(self) -> None:
            pass

    n = spec["new_tokens"]
    config = GenerationConfig(do_sample=False, max_new_tokens=n, min_new_tokens=n)
    config.eos_token_id = model.generation_config.eos_token_id
    config.pad_token_id = model.generation_config.pad_token_id
    stage_times = stage_times if stage_times is not None else {}
    runs = []
    for i in range(spec["warmup"] + spec["runs"]):
        total_start = time.perf_counter()
        with Image.open(spec["image"]) as file:  # decoded each run, as the runtime does
            image = file.convert("RGB")
        messages = user_message(spec["prompt"], 1)
        messages[0]["content"][0]["image"] = image
        inputs = processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        clock = Clock()
        gen_start = time.perf_counter()
        preprocess = gen_start - total_start
        stage_times.clear()
        with torch.no_grad():
            model.generate(**inputs, generation_config=config, streamer=clock)
        end = time.perf_counter()
        t = clock.times
        if i >= spec["warmup"]:
            ttft = t[0] - gen_start
            runs.append(
                {
                    "preprocess": preprocess,
                    **stage_times,
                    # everything else before the first token: embeddings, merge, the prompt's forward
                    "prefill": ttft - sum(stage_times.values()),
                    "ttft": ttft,
                    "decode": t[-1] - t[0],
                    "decode_tokens": len(t) - 1,
                    "decode_tokens_per_s": (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else 0.0,
                    "total": end - total_start,
                    "prompt_tokens": int(inputs["input_ids"].shape[1]),
                }
            )
    return runs


def _time_module(module, stage: str, totals: dict[str, float]) -> None:
    """Accumulate the wall time of every forward call of ``module`` into ``totals[stage]``."""
    started: list[float] = []

    def before(*_args) -> None:
        started.append(time.perf_counter())

    def after(*_args) -> None:
        totals[stage] = totals.get(stage, 0.0) + time.perf_counter() - started.pop()

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def main() -> None:
    spec = json.loads(sys.argv[1])
    runners = {"pytorch": run_pytorch, "optimum-intel": run_optimum_intel, "vlm-export": run_exported}
    result = runners[spec["kind"]](spec)
    if spec["kind"] == "vlm-export" and "torch" in sys.modules:  # the runtime must stay torch-free
        result["warning"] = "torch was imported by the runtime process"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
