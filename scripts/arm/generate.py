"""Greedy generations with the torch-free runtime, for comparing machines (run on x86 and under qemu).

    python generate.py SPEC_JSON  ->  one JSON object on stdout

SPEC: {"folders": [...], "cases": [{"prompt": str, "image": path}], "new_tokens": int}. For each folder
and case: the generated token ids and the first step's logits (after prefill), plus where it ran.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from vlm_export.report.environment import environment
from vlm_export.runtimes.pipeline import KVCache, VLMPipeline


def main() -> None:
    spec = json.loads(sys.argv[1])
    results = {}
    start = time.perf_counter()
    for folder in spec["folders"]:
        pipe = VLMPipeline.from_pretrained(folder, threads=1)
        runs = []
        for case in spec["cases"]:
            prepared = pipe.prepare(case["prompt"], [case["image"]])
            logits = pipe.decoder_step(pipe.prefill_embeds(prepared), KVCache.empty(pipe.manifest))
            n = spec["new_tokens"]
            ids = list(pipe.generate_ids(prepared, max_new_tokens=n, min_new_tokens=n))
            runs.append({"tokens": ids, "logits": np.asarray(logits, dtype=np.float64).tolist()})
        results[folder] = {"precision": sorted({g.precision for g in pipe.manifest.graphs.values()}), "runs": runs}
    print(json.dumps({"environment": environment(), "seconds": time.perf_counter() - start, "results": results}))


if __name__ == "__main__":
    main()
