"""Fuyu (``FuyuForCausalLM``): no vision encoder; image patches are tokens of the decoder.

Split:
  (no vision_encoder)  the numpy preprocessor cuts the image into flattened patches: they are the
                       image features (the manifest has no vision graph, so the runtime skips that stage)
  projector            image_features -> image_embeds  (``vision_embed_tokens``, one linear layer per patch)
  embed_tokens         input_ids -> inputs_embeds
  decoder              the Persimmon decoder with KV cache
Prompt: no chat template. As FuyuProcessor does with ``text=``: the image's rows of patch tokens, each
row closed by a newline token, then BOS, the prompt (no special tokens), and the beginning-of-answer
token. Variable image sizes give variable numbers of patches. Not supported: the processor's
``<box>``/``<point>`` coordinate rewriting, several images per prompt (refused).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlm_export.errors import UnsupportedModelError
from vlm_export.manifest import DECODER, EMBED_TOKENS, PROJECTOR, ImageTokens
from vlm_export.models import register
from vlm_export.models.base import GraphExport, TinyCheckpoint, VLMFamily

BEGINNING_OF_ANSWER = "<0x04>"
IMAGE_TOKEN = "|SPEAKER|"
NEWLINE_TOKEN = "|NEWLINE|"


@register
class FuyuFamily(VLMFamily):
    name = "fuyu"
    architectures = ("FuyuForCausalLM",)
    model_types = ("fuyu",)
    graph_roles = (PROJECTOR, EMBED_TOKENS, DECODER)
    features = "no vision encoder: numpy patches + linear patch embedding; variable image sizes; prompt as `text=`"
    not_supported = "`<box>`/`<point>` coordinate prompts (not rewritten); several images per prompt: refused"

    @classmethod
    def load_model(cls, source: str) -> nn.Module:
        from transformers import FuyuForCausalLM

        return FuyuForCausalLM.from_pretrained(source, dtype=torch.float32)

    @property
    def text_config(self) -> Any:
        return self.config.text_config

    def _patch_features(self) -> int:
        return self.config.patch_size * self.config.patch_size * self.config.num_channels

    # ---- the split -------------------------------------------------------------------------------
    def graph_exports(self) -> list[GraphExport]:
        patches = torch.randn(7, self._patch_features())
        return [self.projector_graph(self.model.model.vision_embed_tokens, patches, "num_patches"), *self.text_graphs()]

    @classmethod
    def stage_modules(cls, model: nn.Module) -> dict[str, nn.Module]:
        return {PROJECTOR: model.model.vision_embed_tokens}

    # ---- images in the prompt ----------------------------------------------------------------------
    def image_tokens(self, processor: Any) -> ImageTokens:
        # tokens_per_tile: each patch is one token (rows add one newline token each)
        return ImageTokens(
            placeholder=IMAGE_TOKEN,
            token=IMAGE_TOKEN,
            token_id=processor.image_token_id,
            tokens_per_tile=1,
            max_images=1,
        )

    def preprocessing(self, processor: Any) -> dict[str, Any]:
        from vlm_export.export.preprocessing import plain_params

        fields = [
            "do_resize",
            "size",
            "resample",
            "do_pad",
            "padding_value",
            "padding_mode",
            "do_rescale",
            "rescale_factor",
            "do_normalize",
            "image_mean",
            "image_std",
            "patch_size",
        ]
        params = plain_params(processor.image_processor, fields)
        if not params["do_pad"] or params["padding_mode"] != "constant":
            raise UnsupportedModelError("Fuyu image processors without constant padding are not supported")
        expected = self.config.patch_size
        if (params["patch_size"]["height"], params["patch_size"]["width"]) != (expected, expected):
            raise UnsupportedModelError("the image processor's patch size differs from the model's")
        return {
            "kind": "fuyu",
            **params,
            "newline_token": NEWLINE_TOKEN,
            "newline_token_id": processor.image_newline_id,
        }

    def prompt_layout(self, processor: Any) -> list[str]:
        return ["images", "token:<s>", "text-plain", f"token:{BEGINNING_OF_ANSWER}"]

    # ---- parity ----------------------------------------------------------------------------------
    def reference_image_inputs(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_patches": pixel_values[None]}  # the runtime's patches are the model's input

    # ---- tests -----------------------------------------------------------------------------------
    @classmethod
    def tiny_checkpoints(cls) -> list[TinyCheckpoint]:
        return [
            TinyCheckpoint(
                "fuyu-persimmon",
                "6x6 patches of images fitted into 60x90, linear patch embedding, Persimmon decoder "
                "(partial rotary, qk layernorm), Llama-style byte-fallback tokenizer",
                lambda folder, seed: _build_tiny(folder, seed),
            )
        ]


def _tokenizer():
    """A sentencepiece-like Unigram tokenizer with byte fallback, as Fuyu's: "|SPEAKER|" encodes as
    ["▁", "|SPEAKER|"] (the processor takes index 1) and "<0x04>" is a byte piece."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    pieces = ["<unk>", "<s>", "</s>", "|ENDOFTEXT|"]
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    pieces += ["▁", IMAGE_TOKEN, NEWLINE_TOKEN]
    pieces += [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    pieces += ["▁" + w for w in ("the", "a", "is", "what", "of", "image", "picture", "how", "many")]
    pieces += list(".,?!0123456789")
    vocab = [(p, 0.0 if i < 4 else -float(len(pieces) - i) / 100.0 - 10.0) for i, p in enumerate(pieces)]
    for i, p in enumerate(pieces):
        if p.startswith("▁") and len(p) > 1:
            vocab[i] = (p, -1.0)
        if p in (IMAGE_TOKEN, NEWLINE_TOKEN, "▁"):
            vocab[i] = (p, -2.0)
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tokenizer


def _build_tiny(folder: Path, seed: int) -> None:
    from transformers import FuyuConfig, FuyuForCausalLM, FuyuImageProcessor, FuyuProcessor

    from vlm_export.testing.tokenizer import hf_fast_tokenizer

    tokenizer = _tokenizer()
    hf_tok = hf_fast_tokenizer(tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="|ENDOFTEXT|")
    image_token_id = hf_tok.encode(IMAGE_TOKEN, add_special_tokens=False)[1]
    config = FuyuConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        image_size=60,
        patch_size=6,
        num_channels=3,
        pad_token_id=3,
        bos_token_id=1,
        eos_token_id=2,
        image_token_id=image_token_id,
    )
    config.architectures = ["FuyuForCausalLM"]
    torch.manual_seed(seed)
    model = FuyuForCausalLM(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    image_processor = FuyuImageProcessor(size={"height": 60, "width": 90}, patch_size={"height": 6, "width": 6})
    FuyuProcessor(image_processor=image_processor, tokenizer=hf_tok).save_pretrained(folder)
    (folder / "tiny.json").write_text(json.dumps({"seed": seed, "decoder": "persimmon"}) + "\n")
