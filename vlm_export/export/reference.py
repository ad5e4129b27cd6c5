"""transformers' own greedy generation: the reference every export is compared with."""

from __future__ import annotations

from typing import Any

import torch


def greedy_generate(model: Any, max_new_tokens: int, **inputs: torch.Tensor | None) -> list[int]:
    """New token ids from ``model.generate`` with plain greedy search.

    The checkpoint's generation_config may carry sampling or repetition settings; they are replaced by a
    bare greedy config so the comparison is between the graphs, not between decoding policies.
    """
    from transformers import GenerationConfig

    gen = model.generation_config
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=gen.eos_token_id,
        pad_token_id=gen.pad_token_id if gen.pad_token_id is not None else gen.eos_token_id,
        bos_token_id=gen.bos_token_id,
    )
    feed = {k: v for k, v in inputs.items() if v is not None}
    input_ids = feed["input_ids"]
    feed.setdefault("attention_mask", torch.ones_like(input_ids))
    with torch.no_grad():
        out = model.generate(**feed, generation_config=config)
    return out[0, input_ids.shape[1] :].tolist()
