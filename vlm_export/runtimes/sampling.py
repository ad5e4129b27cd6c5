"""Choosing the next token from logits: greedy, or temperature / top-k / top-p sampling.

Sampling applies the filters in transformers' order (temperature, then top-k, then top-p) and draws from
a seeded numpy generator, so a seed reproduces a run of this runtime (not of PyTorch's sampler).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.do_sample and self.temperature <= 0:
            raise ValueError("temperature must be > 0 when sampling")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")


class Sampler:
    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray) -> int:
        """``logits``: the vocabulary scores of one position, shape (vocab,)."""
        if not self.params.do_sample:
            return int(np.argmax(logits))
        scores = logits.astype(np.float64) / self.params.temperature
        if 0 < self.params.top_k < scores.shape[-1]:
            kth = np.partition(scores, -self.params.top_k)[-self.params.top_k]
            scores = np.where(scores < kth, -np.inf, scores)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        if self.params.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            cut = int(np.searchsorted(cumulative, self.params.top_p) + 1)
            keep = np.zeros_like(probs, dtype=bool)
            keep[order[:cut]] = True
            probs = np.where(keep, probs, 0.0)
            probs /= probs.sum()
        return int(self.rng.choice(probs.shape[-1], p=probs))
