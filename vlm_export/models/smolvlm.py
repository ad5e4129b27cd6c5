"""SmolVLM2-style checkpoints (``SmolVLMForConditionalGeneration``, model_type ``smolvlm``).

The model is Idefics3's (SigLIP-style tiles, pixel-shuffle connector, Llama decoder under
``model.model.{vision_model,connector,text_model}``), so the split, the graphs and the runtime's
``idefics3`` preprocessor are inherited from :class:`Idefics3Family`. Only the processor differs:
``SmolVLMProcessor`` also carries a video processor that cannot be imported without torchvision
(deliberately absent: PyPI's build is CUDA's). Its image path is the same code as
``Idefics3Processor``'s (tiling, ``<fake_token_around_image><row_r_col_c>`` expansion, global image;
transformers 4.57), so where the real class cannot load, the checkpoint's own processor files are
read through ``Idefics3Processor`` after checking that nothing SmolVLM-specific is configured.
Videos are not supported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlm_export.errors import ModelLoadError
from vlm_export.models import register
from vlm_export.models.base import TinyCheckpoint
from vlm_export.models.idefics3 import Idefics3Family

# The tokens SmolVLMProcessor reads from its tokenizer (with these defaults) and Idefics3Processor fixes.
_IMAGE_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}


@register
class SmolVLMFamily(Idefics3Family):
    name = "smolvlm"
    architectures = ("SmolVLMForConditionalGeneration",)
    model_types = ("smolvlm",)
    features = "as idefics3 (SmolVLM2 checkpoints); loads without torchvision"
    not_supported = "videos (SmolVLMProcessor's video path needs torchvision)"

    @classmethod
    def load_processor(cls, source: str) -> Any:
        from transformers import AutoProcessor

        try:
            return AutoProcessor.from_pretrained(source, use_fast=False)
        except ImportError:  # transformers raises ModuleNotFoundError for the torchvision-only module
            return image_processor_equivalent(source)

    @classmethod
    def tiny_checkpoints(cls) -> list[TinyCheckpoint]:
        return [
            TinyCheckpoint(
                "smolvlm2-split",
                "SmolVLMForConditionalGeneration: SigLIP-style 2 layers at 32 px tiles, pixel shuffle x2, "
                "Llama decoder with GQA; SmolVLM2 processor files (image tokens named by the tokenizer)",
                _build_tiny,
            )
        ]


def image_processor_equivalent(source: str) -> Any:
    """``Idefics3Processor`` over a SmolVLM checkpoint's files: the same image path, no video processor."""
    from transformers import AutoTokenizer, Idefics3Processor

    tokenizer = AutoTokenizer.from_pretrained(source)
    for attribute, default in _IMAGE_TOKENS.items():
        value = getattr(tokenizer, attribute, None) or default
        if value != default:
            raise ModelLoadError(
                f"{source} names its {attribute} {value!r}, not {default!r}; without SmolVLMProcessor "
                "(it needs torchvision) only the default image tokens are supported",
                fix="install a CPU build of torchvision matching torch, or use the default token names",
            )
        if tokenizer.convert_tokens_to_ids(value) in (None, tokenizer.unk_token_id):
            raise ModelLoadError(f"{source}'s tokenizer has no {value} token")
    extra = list(tokenizer.additional_special_tokens)
    processor = Idefics3Processor.from_pretrained(source, use_fast=False)  # reads processor_config.json
    # Idefics3Processor re-registers its three tokens as *the* additional special tokens; SmolVLMProcessor
    # leaves the tokenizer's list alone, so put the checkpoint's list back (the manifest records it)
    tokens = processor.tokenizer
    kept = extra + [t for t in tokens.additional_special_tokens if t not in extra]
    tokens.add_special_tokens({"additional_special_tokens": kept}, replace_additional_special_tokens=True)
    return processor


# Same words as SmolVLM2's chat template: "User:" before an image, "User: " before text.
_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _build_tiny(folder: Path, seed: int) -> None:
    """A SmolVLM2-shaped folder written without SmolVLMProcessor (it cannot be imported here):
    image processor, tokenizer with the image-token attributes, processor_config.json, chat template."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor

    from vlm_export.models.idefics3 import TINY_IMAGE_SETTINGS, TINY_TOKENS_PER_TILE, save_tiny_model
    from vlm_export.testing.tokenizer import hf_fast_tokenizer

    tokenizer = save_tiny_model(SmolVLMConfig, SmolVLMForConditionalGeneration, folder, seed)
    hf_fast_tokenizer(
        tokenizer,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=dict(_IMAGE_TOKENS),
    ).save_pretrained(folder)
    image_processor = SmolVLMImageProcessor(do_image_splitting=True, **TINY_IMAGE_SETTINGS)
    image_processor.processor_class = "SmolVLMProcessor"
    image_processor.save_pretrained(folder)
    settings = {"image_seq_len": TINY_TOKENS_PER_TILE, "processor_class": "SmolVLMProcessor"}
    (folder / "processor_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": _TEMPLATE}, indent=2) + "\n")
    (folder / "tiny.json").write_text(json.dumps({"seed": seed, "splitting": True}) + "\n")
