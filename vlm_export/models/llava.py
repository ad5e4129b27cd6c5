"""LLaVA (``LlavaForConditionalGeneration``): CLIP-style vision tower, MLP projector, any HF decoder.

Split:
  vision_encoder  pixel_values -> image_features  (hidden states of ``vision_feature_layer``, one or
                  several layers concatenated; CLS dropped when the strategy is "default")
  projector       image_features -> image_embeds  (``multi_modal_projector``)
  embed_tokens    input_ids -> inputs_embeds
  decoder         inputs_embeds, attention_mask, position_ids, past -> logits, present
Image tokens: each ``<image>`` becomes ``tokens_per_tile`` copies of the image token (LlavaProcessor).
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


class LlavaVisionFeatures(nn.Module):
    """pixel_values -> image_features, exactly as ``LlavaModel.get_image_features`` selects them."""

    def __init__(self, vision_tower: nn.Module, layers: list[int], strategy: str) -> None:
        super().__init__()
        self.vision_tower = vision_tower
        self.layers = layers
        self.drop_cls = strategy == "default"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.vision_tower(pixel_values, output_hidden_states=True).hidden_states
        picked = [hidden[layer][:, 1:] if self.drop_cls else hidden[layer] for layer in self.layers]
        return picked[0] if len(picked) == 1 else torch.cat(picked, dim=-1)


@register
class LlavaFamily(VLMFamily):
    name = "llava"
    architectures = ("LlavaForConditionalGeneration",)
    model_types = ("llava",)
    features = "chat template; `vision_feature_layer` int or list; strategy default/full; any HF decoder"
    not_supported = "LLaVA-NeXT any-resolution tiling (a different architecture, refused)"

    @classmethod
    def load_model(cls, source: str) -> nn.Module:
        from transformers import LlavaForConditionalGeneration

        return LlavaForConditionalGeneration.from_pretrained(source, dtype=torch.float32, attn_implementation="sdpa")

    @property
    def text_config(self) -> Any:
        return self.config.text_config

    # ---- the split -------------------------------------------------------------------------------
    def _vision_features(self) -> LlavaVisionFeatures:
        layer = self.config.vision_feature_layer
        layers = [layer] if isinstance(layer, int) else list(layer)
        strategy = self.config.vision_feature_select_strategy
        if strategy not in ("default", "full"):
            raise ValueError(f"unknown vision_feature_select_strategy {strategy!r}")
        return LlavaVisionFeatures(self.model.model.vision_tower, layers, strategy)

    def graph_exports(self) -> list[GraphExport]:
        return self.standard_graphs(self._vision_features(), self.model.model.multi_modal_projector)

    @classmethod
    def stage_modules(cls, model: nn.Module) -> dict[str, nn.Module]:
        return {VISION_ENCODER: model.model.vision_tower, PROJECTOR: model.model.multi_modal_projector}

    # ---- images in the prompt ----------------------------------------------------------------------
    def image_tokens(self, processor: Any) -> ImageTokens:
        vcfg = self.config.vision_config
        with torch.no_grad():
            pixel_values = torch.zeros(1, vcfg.num_channels, vcfg.image_size, vcfg.image_size)
            tokens = self._vision_features()(pixel_values).shape[1]
        token = getattr(processor, "image_token", None) or "<image>"
        return ImageTokens(placeholder=token, token=token, token_id=self.config.image_token_id, tokens_per_tile=tokens)

    def preprocessing(self, processor: Any) -> dict[str, Any]:
        from vlm_export.export.preprocessing import clip_preprocessing

        return clip_preprocessing(processor.image_processor)

    # ---- tests -----------------------------------------------------------------------------------
    @classmethod
    def tiny_checkpoints(cls) -> list[TinyCheckpoint]:
        return [
            TinyCheckpoint(
                "llava-llama-gqa",
                "CLIP 2 layers, feature layer -2, strategy default; Llama decoder with GQA (4 heads, 2 KV)",
                lambda folder, seed: _build_tiny(folder, seed, decoder="llama", layer=-2, strategy="default"),
                tags={"default"},
            ),
            TinyCheckpoint(
                "llava-qwen2-full",
                "CLIP 3 layers, feature layers [-3, -1] concatenated, strategy full; Qwen2 decoder (GQA)",
                lambda folder, seed: _build_tiny(folder, seed, decoder="qwen2", layer=[-3, -1], strategy="full"),
            ),
        ]


_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
# A LLaVA-1.5 style template; the first variant leaves BOS to the tokenizer, the second writes it itself
# (transformers then tokenizes without special tokens): both paths of the processor are exercised.
LLAVA_CHAT_TEMPLATE = (
    "{%- for message in messages -%}{%- if message['role'] == 'user' -%}{{- 'USER: ' -}}"
    "{%- else -%}{{- 'ASSISTANT: ' -}}{%- endif -%}{%- if message['content'] is string -%}"
    "{{- message['content'] -}}{%- else -%}{%- for c in message['content'] -%}{%- if c['type'] == 'image' -%}"
    "{{- '<image>\n' -}}{%- elif c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{- ' ' -}}{%- else -%}{{- eos_token -}}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)


def _build_tiny(folder: Path, seed: int, decoder: str, layer: int | list[int], strategy: str) -> None:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.auto import CONFIG_MAPPING

    from vlm_export.testing.tokenizer import byte_level_tokenizer, hf_fast_tokenizer

    tokenizer = byte_level_tokenizer(_SPECIALS, bos_token="<s>")
    vocab = tokenizer.get_vocab_size()
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2 if decoder == "llama" else 3,
        num_attention_heads=4,
        image_size=30,
        patch_size=6,
        projection_dim=32,
    )
    text = CONFIG_MAPPING[decoder](
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=3,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=4,
        vision_feature_layer=layer,
        vision_feature_select_strategy=strategy,
        projector_hidden_act="gelu",
        pad_token_id=3,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)

    template = LLAVA_CHAT_TEMPLATE if decoder == "llama" else "{{- bos_token -}}" + LLAVA_CHAT_TEMPLATE
    hf_tok = hf_fast_tokenizer(tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 30},
        crop_size={"height": 30, "width": 30},
        resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=hf_tok,
        patch_size=6,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        chat_template=template,
    )
    processor.save_pretrained(folder)
    (folder / "tiny.json").write_text(json.dumps({"seed": seed, "decoder": decoder}) + "\n")
