"""The runtime must work, and import nothing heavy, where torch does not exist (ARM boards, phones)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import DEFAULT_TINY, picture

SCRIPT = r"""
import json, sys
from vlm_export.cli import app
from vlm_export.runtimes.pipeline import VLMPipeline
pipe = VLMPipeline.from_pretrained(sys.argv[1])
result = pipe.generate("Describe the image.", [sys.argv[2]], max_new_tokens=4)
try:
    app(["run", sys.argv[1], "-i", sys.argv[2], "-p", "Hi", "-n", "2", "--json"], standalone_mode=False)
    app(["inspect", sys.argv[1], "--json"], standalone_mode=False)
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "transformers", "onnx", "onnxscript", "optimum") if m in sys.modules)
print(json.dumps({"heavy": heavy, "tokens": len(result.token_ids)}))
"""


def run_script(script: str, *args) -> dict:
    """Run ``script`` in a fresh interpreter; return the JSON object on its last stdout line."""
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_runtime_and_cli_import_no_torch(exported, tmp_path):
    image = tmp_path / "image.png"
    picture(1).save(image)
    report = run_script(SCRIPT, exported(DEFAULT_TINY), image)
    assert report["heavy"] == []
    assert report["tokens"] >= 1


BENCH_SCRIPT = r"""
import json, sys
from pathlib import Path
from vlm_export.report.bench import BenchSettings, run_bench
settings = BenchSettings(threads=1, image_size=(64, 64), new_tokens=3, runs=1, warmup=0)
report = run_bench([Path(sys.argv[1])], settings, Path(sys.argv[2]))
heavy = sorted(m for m in ("torch", "transformers", "onnx", "optimum") if m in sys.modules)
print(json.dumps({"heavy": heavy, "errors": [c.get("error") for c in report["configurations"]]}))
"""


def test_bench_runs_without_torch(exported, tmp_path):
    assert run_script(BENCH_SCRIPT, exported(DEFAULT_TINY), tmp_path) == {"heavy": [], "errors": [None]}
