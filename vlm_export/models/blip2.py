"""BLIP-2 (``Blip2ForConditionalGeneration``): ViT, Q-Former abstractor, decoder-only language model.

Split:
  vision_encoder  pixel_values -> image_features  (the ViT's last hidden state, CLS included)
  projector       image_features -> image_embeds  (learned query tokens cross-attend to the features in
                  the Q-Former; ``language_projection`` maps them to the decoder's width: a fixed
                  ``num_query_tokens`` embeddings per image whatever the image size)
  embed_tokens    input_ids -> inputs_embeds
  decoder         the language model (OPT in the tiny tests) with KV cache
Prompt: there is no chat template. As Blip2Processor does with ``text=``, the image's query tokens come
first, then the prompt tokenized with the tokenizer's special tokens (so BOS sits after the image).
Encoder-decoder language models (Flan-T5 variants) are refused: the decoder graph is decoder-only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlm_export.errors import UnsupportedModelError
from vlm_export.manifest import PROJECTOR, VISION_ENCODER, ImageTokens
from vlm_export.models import register
from vlm_export.models.base import GraphExport, TinyCheckpoint, VLMFamily


class Blip2VisionFeatures(nn.Module):
    """pixel_values -> the ViT's last hidden state, which the Q-Former cross-attends to."""

    def __init__(self, vision_model: nn.Module) -> None:
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state


class QFormerProjector(nn.Module):
    """image_features -> image_embeds: query tokens through the Q-Former, then the language projection."""

    def __init__(self, query_tokens: nn.Parameter, qformer: nn.Module, language_projection: nn.Module) -> None:
        super().__init__()
        self.query_tokens = query_tokens
        self.qformer = qformer
        self.language_projection = language_projection

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(image_features.shape[:-1], dtype=torch.long, device=image_features.device)
        queries = self.query_tokens.expand(image_features.shape[0], -1, -1)
        out = self.qformer(
            query_embeds=queries, encoder_hidden_states=image_features, encoder_attention_mask=mask, return_dict=True
        )
        return self.language_projection(out.last_hidden_state)


@register
class Blip2Family(VLMFamily):
    name = "blip2"
    architectures = ("Blip2ForConditionalGeneration",)
    model_types = ("blip-2",)
    features = "Q-Former + language projection as the projector (fixed query tokens); prompt as `text=`"
    not_supported = "encoder-decoder language models (Flan-T5): refused; several images per prompt: refused"

    @classmethod
    def load_model(cls, source: str) -> nn.Module:
        from transformers import AutoConfig, Blip2ForConditionalGeneration

        config = AutoConfig.from_pretrained(source)
        if not config.use_decoder_only_language_model:
            raise UnsupportedModelError(
                f"BLIP-2 with an encoder-decoder language model ({config.text_config.model_type}) is not supported",
                fix="export a BLIP-2 checkpoint with a decoder-only language model such as OPT",
            )
        return Blip2ForConditionalGeneration.from_pretrained(source, dtype=torch.float32)

    @property
    def text_config(self) -> Any:
        return self.config.text_config

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model.model

    @property
    def lm_head(self) -> nn.Module:
        return self.model.language_model.lm_head

    # ---- the split -------------------------------------------------------------------------------
    def graph_exports(self) -> list[GraphExport]:
        model = self.model
        projector = QFormerProjector(model.query_tokens, model.qformer, model.language_projection)
        return self.standard_graphs(Blip2VisionFeatures(model.vision_model), projector)

    @classmethod
    def stage_modules(cls, model: nn.Module) -> dict[str, nn.Module]:
        return {VISION_ENCODER: model.vision_model, PROJECTOR: model.qformer}

    # ---- images in the prompt ----------------------------------------------------------------------
    def image_tokens(self, processor: Any) -> ImageTokens:
        token = getattr(processor, "image_token", None)
        token = getattr(token, "content", token) or "<image>"
        return ImageTokens(
            placeholder=token,
            token=token,
            token_id=self.config.image_token_id,
            tokens_per_tile=self.config.num_query_tokens,
            max_images=1,
        )

    def preprocessing(self, processor: Any) -> dict[str, Any]:
        from vlm_export.export.preprocessing import clip_preprocessing

        # BlipImageProcessor: resize to (height, width), no crop, then CLIP-style rescale and normalize.
        return {**clip_preprocessing(processor.image_processor), "do_center_crop": False, "crop_size": None}

    def prompt_layout(self, processor: Any) -> list[str]:
        return ["images", "text"]

    # ---- tests -----------------------------------------------------------------------------------
    @classmethod
    def tiny_checkpoints(cls) -> list[TinyCheckpoint]:
        return [
            TinyCheckpoint(
                "blip2-opt",
                "ViT 2 layers, Q-Former 2 layers with 8 query tokens (cross-attention every layer), OPT decoder",
                lambda folder, seed: _build_tiny(folder, seed),
            )
        ]


_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]


def _build_tiny(folder: Path, seed: int) -> None:
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
    )

    from vlm_export.testing.tokenizer import byte_level_tokenizer, hf_fast_tokenizer

    tokenizer = byte_level_tokenizer(_SPECIALS, bos_token="<s>")
    vision = Blip2VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=30, patch_size=6
    )
    qformer = Blip2QFormerConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        encoder_hidden_size=32,
        cross_attention_frequency=1,
    )
    text = OPTConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=64,
        word_embed_proj_dim=64,
        ffn_dim=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=8,
        image_token_index=4,
    )
    config.architectures = ["Blip2ForConditionalGeneration"]
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    hf_tok = hf_fast_tokenizer(tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    image_processor = BlipImageProcessor(
        size={"height": 30, "width": 30},
        resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor = Blip2Processor(image_processor=image_processor, tokenizer=hf_tok, num_query_tokens=8)
    processor.save_pretrained(folder)
    (folder / "tiny.json").write_text(json.dumps({"seed": seed, "decoder": "opt"}) + "\n")
