"""Idefics3 and SmolVLM-Instruct checkpoints (``Idefics3ForConditionalGeneration``): tiles, pixel shuffle.

SmolVLM2-style ``SmolVLMForConditionalGeneration`` checkpoints are declared in ``smolvlm.py`` (same model).

Split:
  vision_encoder  pixel_values (tiles) -> image_features  (patch embeddings + positions, encoder,
                  post-layernorm; every tile is a full square, so the patch attention mask is all ones)
  projector       image_features -> image_embeds  (the connector: pixel shuffle, then a linear layer:
                  a 4x pixel shuffle turns 1024 patches into 64 tokens)
  embed_tokens    input_ids -> inputs_embeds
  decoder         inputs_embeds, attention_mask, position_ids, past -> logits, present
Image tokens: the processor's tile layout (``<fake_token_around_image><row_r_col_c><image>*64`` per
tile, then the global image), made by the runtime's ``idefics3`` preprocessor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlm_export.manifest import PROJECTOR, VISION_ENCODER, ImageTokens
from vlm_export.models import register
from vlm_export.models.base import GraphExport, TinyCheckpoint, VLMFamily


def full_tile_position_ids(embeddings: nn.Module, image_size: int) -> torch.Tensor:
    """The position ids ``Idefics3VisionEmbeddings`` computes for a tile whose patches are all real."""
    side = image_size // embeddings.patch_size
    boundaries = torch.arange(1 / embeddings.num_patches_per_side, 1.0, 1 / embeddings.num_patches_per_side)
    coords = torch.arange(side, dtype=torch.float32) / side * (1 - 1e-6)
    buckets = torch.bucketize(coords, boundaries, right=True)
    return (buckets[:, None] * embeddings.num_patches_per_side + buckets[None, :]).flatten()[None]


class Idefics3VisionTiles(nn.Module):
    """pixel_values -> image_features for full tiles (no data-dependent loop over the batch)."""

    def __init__(self, vision_model: nn.Module, image_size: int) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.register_buffer("position_ids", full_tile_position_ids(vision_model.embeddings, image_size))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        emb = self.vision_model.embeddings
        hidden = emb.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        hidden = hidden + emb.position_embedding(self.position_ids)
        hidden = self.vision_model.encoder(inputs_embeds=hidden, attention_mask=None).last_hidden_state
        return self.vision_model.post_layernorm(hidden)


@register
class Idefics3Family(VLMFamily):
    name = "idefics3"
    architectures = ("Idefics3ForConditionalGeneration",)
    features = "chat template; image splitting on/off (tiles + global image); pixel-shuffle connector"
    not_supported = "non-RGB images are converted before resizing (may differ by resampling rounding)"
    model_types = ("idefics3",)

    @classmethod
    def load_model(cls, source: str) -> nn.Module:
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32, attn_implementation="sdpa")

    @property
    def text_config(self) -> Any:
        return self.config.text_config

    def _vision(self) -> Idefics3VisionTiles:
        return Idefics3VisionTiles(self.model.model.vision_model, self.config.vision_config.image_size)

    @property
    def language_model(self) -> nn.Module:
        return self.model.model.text_model

    def graph_exports(self) -> list[GraphExport]:
        return self.standard_graphs(self._vision(), self.model.model.connector, tile_axis="num_tiles")

    @classmethod
    def stage_modules(cls, model: nn.Module) -> dict[str, nn.Module]:
        return {VISION_ENCODER: model.model.vision_model, PROJECTOR: model.model.connector}

    def image_tokens(self, processor: Any) -> ImageTokens:
        vcfg = self.config.vision_config
        with torch.no_grad():
            pixels = torch.zeros(1, vcfg.num_channels, vcfg.image_size, vcfg.image_size)
            tokens = self.model.model.connector(self._vision()(pixels)).shape[1]
        if processor.image_seq_len != tokens:
            raise ValueError(f"processor image_seq_len {processor.image_seq_len} != {tokens} tokens per tile")
        return ImageTokens(
            placeholder=processor.image_token,
            token=processor.image_token,
            token_id=self.config.image_token_id,
            tokens_per_tile=tokens,
        )

    def preprocessing(self, processor: Any) -> dict[str, Any]:
        from vlm_export.export.preprocessing import plain_params

        ip = processor.image_processor
        fields = (
            "do_convert_rgb",
            "do_resize",
            "size",
            "resample",
            "do_image_splitting",
            "max_image_size",
            "do_rescale",
            "rescale_factor",
            "do_normalize",
            "image_mean",
            "image_std",
        )
        return {
            "kind": "idefics3",
            **plain_params(ip, fields),
            "fake_image_token": processor.fake_image_token,
            "global_image_token": getattr(processor, "global_image_tag", None) or processor.global_image_token,
        }

    def reference_image_inputs(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixel_values": pixel_values[None]}  # (batch, tiles, C, H, W)

    @classmethod
    def tiny_checkpoints(cls) -> list[TinyCheckpoint]:
        return [
            TinyCheckpoint(
                "idefics3-split",
                "SigLIP-style 2 layers at 32 px tiles (patch 4), pixel shuffle x2; Llama decoder with GQA; "
                "image splitting on (longest edge 64: up to 2x2 tiles + global)",
                lambda folder, seed: _build_tiny(folder, seed, splitting=True),
            ),
            TinyCheckpoint(
                "idefics3-single",
                "the same model with image splitting off (one square tile per image)",
                lambda folder, seed: _build_tiny(folder, seed, splitting=False),
            ),
        ]


_SPECIALS = ["<unk>", "<|im_start|>", "<pad>", "<end_of_utterance>", "<fake_token_around_image>", "<image>"]
_SPECIALS += ["<global-img>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
_TEMPLATE = (
    "{{- '<|im_start|>' -}}{%- for message in messages -%}{%- if message['role'] == 'user' -%}{{- 'User:' -}}"
    "{%- else -%}{{- 'Assistant:' -}}{%- endif -%}{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for c in message['content'] -%}{%- if c['type'] == 'image' -%}{{- '<image>' -}}"
    "{%- elif c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<end_of_utterance>\n' -}}{%- endfor -%}{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}"
)


# The tiny image processor: 64 px longest edge split into 32 px tiles (patch 4, pixel shuffle x2 -> 16 tokens)
TINY_IMAGE_SETTINGS: dict[str, Any] = {
    "size": {"longest_edge": 64},
    "max_image_size": {"longest_edge": 32},
    "resample": 1,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}
TINY_TOKENS_PER_TILE = (32 // 4) ** 2 // 2**2


def save_tiny_model(config_cls: type, model_cls: type, folder: Path, seed: int):
    """The tiny Idefics3-shaped model (SigLIP-style 2 layers at 32 px, Llama decoder with GQA), seeded
    and saved with its generation config; returns the byte-level tokenizer its vocabulary comes from.
    Shared with SmolVLM, whose model is the same under another class name."""
    from vlm_export.testing.tokenizer import byte_level_tokenizer

    tokenizer = byte_level_tokenizer(_SPECIALS, bos_token="<|im_start|>")
    config = config_cls(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 4,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": tokenizer.get_vocab_size(),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "pad_token_id": 2,
            "bos_token_id": 1,
            "eos_token_id": 3,
            "tie_word_embeddings": False,
        },
        scale_factor=2,
        image_token_id=_SPECIALS.index("<image>"),
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    config.architectures = [model_cls.__name__]
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    model.generation_config.eos_token_id = 3
    model.generation_config.save_pretrained(folder)
    return tokenizer


def _build_tiny(folder: Path, seed: int, splitting: bool) -> None:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    from vlm_export.testing.tokenizer import hf_fast_tokenizer

    tokenizer = save_tiny_model(Idefics3Config, Idefics3ForConditionalGeneration, folder, seed)
    hf_tok = hf_fast_tokenizer(
        tokenizer, bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<pad>", unk_token="<unk>"
    )
    image_processor = Idefics3ImageProcessor(do_image_splitting=splitting, **TINY_IMAGE_SETTINGS)
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=hf_tok,
        image_seq_len=TINY_TOKENS_PER_TILE,
        chat_template=_TEMPLATE,
    )
    processor.save_pretrained(folder)
    (folder / "tiny.json").write_text(json.dumps({"seed": seed, "splitting": splitting}) + "\n")
