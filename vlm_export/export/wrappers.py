"""Small torch modules that give each graph a flat, export-friendly signature.

Families reuse these for the parts every VLM shares (token embeddings, the KV-cache decoder) and write
their own only for what differs (vision feature selection, abstractors).
"""

from __future__ import annotations

import torch
from torch import nn


class EmbedTokens(nn.Module):
    """input_ids -> inputs_embeds"""

    def __init__(self, embedding: nn.Module) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids)


class DecoderWithCache(nn.Module):
    """inputs_embeds, attention_mask, position_ids, past.{i}.key/value -> logits, present.{i}.key/value

    One graph serves prefill (past length 0) and decode. Only the last position's logits are computed:
    the runtime never needs the others, and the vocabulary projection of a long prompt would otherwise
    dominate time to first token.
    """

    def __init__(self, language_model: nn.Module, lm_head: nn.Module, num_layers: int) -> None:
        super().__init__()
        self.language_model = language_model
        self.lm_head = lm_head
        self.num_layers = num_layers

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache()
        for layer in range(self.num_layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            return_dict=True,
        )
        logits = self.lm_head(out.last_hidden_state[:, -1:, :])
        presents: list[torch.Tensor] = []
        for layer in out.past_key_values.layers:
            presents.extend((layer.keys, layer.values))
        return (logits, *presents)


def decoder_export_inputs(
    hidden_size: int, num_layers: int, num_kv_heads: int, head_dim: int, batch: int = 2, seq: int = 5, past: int = 3
) -> tuple[dict[str, torch.Tensor], list[str], dict[str, dict[int, str]]]:
    """Example inputs, output names and dynamic axes of :class:`DecoderWithCache`.

    Batch 2 and past > 0 keep the exporter from specialising either axis to a constant.
    """
    total = past + seq
    inputs: dict[str, torch.Tensor] = {
        "inputs_embeds": torch.randn(batch, seq, hidden_size),
        "attention_mask": torch.ones(batch, total, dtype=torch.int64),
        "position_ids": torch.arange(past, total, dtype=torch.int64).expand(batch, seq).contiguous(),
    }
    axes: dict[str, dict[int, str]] = {
        "inputs_embeds": {0: "batch", 1: "sequence_length"},
        "attention_mask": {0: "batch", 1: "total_sequence_length"},
        "position_ids": {0: "batch", 1: "sequence_length"},
        "logits": {0: "batch"},
    }
    outputs = ["logits"]
    for layer in range(num_layers):
        for kind in ("key", "value"):
            inputs[f"past_key_values.{layer}.{kind}"] = torch.randn(batch, num_kv_heads, past, head_dim)
            axes[f"past_key_values.{layer}.{kind}"] = {0: "batch", 2: "past_sequence_length"}
            outputs.append(f"present.{layer}.{kind}")
            axes[f"present.{layer}.{kind}"] = {0: "batch", 2: "total_sequence_length"}
    return inputs, outputs, axes
