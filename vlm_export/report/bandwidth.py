"""A short streaming-copy probe of memory bandwidth, for the decode roofline.

Decode reads every decoder weight once per token, so bytes per token / bandwidth is the floor of the
time per token; the report shows how close decode gets to it. The copy runs on ``threads`` threads
(numpy releases the GIL while copying), over buffers far larger than any cache.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def measure_bandwidth(threads: int = 1, megabytes: int = 256, repeats: int = 5) -> dict:
    """Best-of-``repeats`` bytes moved per second (read + write) copying ``megabytes`` per thread."""
    n = megabytes * (1 << 20) // 8
    sources = [np.ones(n, dtype=np.float64) for _ in range(threads)]
    targets = [np.empty_like(s) for s in sources]
    best = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(repeats + 1):  # the first pass faults the pages in
            start = time.perf_counter()
            list(pool.map(lambda pair: np.copyto(pair[1], pair[0]), zip(sources, targets)))
            elapsed = time.perf_counter() - start
            best = max(best, 2 * sum(s.nbytes for s in sources) / elapsed)
    return {"bytes_per_s": best, "gb_per_s": round(best / 1e9, 2), "threads": threads, "method": "numpy copy"}
