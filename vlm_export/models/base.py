"""What a model family declares: its split into graphs, and how images reach the prompt.

A family file (``llava.py`` and friends) subclasses :class:`VLMFamily`, registers itself with
``@register``, and answers a handful of questions about one loaded checkpoint:

* :meth:`~VLMFamily.graph_exports`: the torch modules that become each ONNX graph, with example inputs
  and named dynamic axes (one :class:`GraphExport` per graph);
* :meth:`~VLMFamily.image_tokens` and :meth:`~VLMFamily.preprocessing`: how the runtime turns an image
  into pixel values and prompt tokens, as plain data for the manifest;
* :meth:`~VLMFamily.reference_image_inputs`: the pixels as transformers' ``generate`` takes them, so the
  parity gate can compare with its greedy output;
* :meth:`~VLMFamily.tiny_checkpoints`: random-weight checkpoints small enough for tests.

Everything generic (the KV-cache decoder, the embedding graph, tokenizer and chat template, decoder
sizes) lives here or in ``vlm_export.export`` so that a family file stays short.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from vlm_export.manifest import DECODER, EMBED_TOKENS, PROJECTOR, VISION_ENCODER, DecoderInfo, ImageTokens


@dataclass
class GraphExport:
    """One graph to export: a module, example inputs in call order, and the named dynamic axes.

    ``dynamic_axes`` covers inputs and outputs: ``{"pixel_values": {0: "num_images"}}``. Input axes
    become ``torch.export`` dims; output axes only name the exported graph's output dimensions.
    """

    role: str
    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    summary: str


@dataclass
class TinyCheckpoint:
    """A named random-weight checkpoint recipe used by the tests (and the demo until a trained model ships)."""

    name: str
    description: str
    build: Callable[[Path, int], None]  # (folder, seed) -> writes a full HF checkpoint folder
    tags: set[str] = field(default_factory=set)


class VLMFamily(ABC):
    """Base class of every model family. Subclasses are small and declarative."""

    name: ClassVar[str]
    architectures: ClassVar[tuple[str, ...]]
    model_types: ClassVar[tuple[str, ...]] = ()
    graph_roles: ClassVar[tuple[str, ...]] = (VISION_ENCODER, PROJECTOR, EMBED_TOKENS, DECODER)
    # one line each for the README's generated support table
    features: ClassVar[str] = ""
    not_supported: ClassVar[str] = ""

    def __init__(self, model: torch.nn.Module, source: str) -> None:
        self.model = model.eval()
        self.config = model.config
        self.source = source

    # ---- loading ---------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def load_model(cls, source: str) -> torch.nn.Module:
        """Load the checkpoint in fp32 with the attention implementation that exports best."""

    @classmethod
    def load(cls, source: str) -> VLMFamily:
        return cls(cls.load_model(source), source)

    @classmethod
    def load_processor(cls, source: str) -> Any:
        """The checkpoint's HF processor (image processor + tokenizer + chat template).

        Families whose processor class cannot load everywhere override this with an equivalent.
        """
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(source, use_fast=False)

    # ---- the split -------------------------------------------------------------------------------
    @abstractmethod
    def graph_exports(self) -> list[GraphExport]:
        """The graphs of this family, in pipeline order."""

    @property
    @abstractmethod
    def text_config(self) -> Any:
        """The decoder's config (``config.text_config`` for most VLMs)."""

    def decoder_info(self) -> DecoderInfo:
        cfg = self.text_config
        heads = cfg.num_attention_heads
        return DecoderInfo(
            num_layers=cfg.num_hidden_layers,
            num_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
            hidden_size=cfg.hidden_size,
            vocab_size=cfg.vocab_size,
            max_positions=getattr(cfg, "max_position_embeddings", None),
            num_heads=heads,
        )

    def standard_graphs(
        self, vision: torch.nn.Module, projector: torch.nn.Module, tile_axis: str = "num_images"
    ) -> list[GraphExport]:
        """The usual four graphs: ``vision`` and ``projector`` as given, then :meth:`text_graphs`.

        Families whose split differs (no vision tower, extra inputs) build their list themselves.
        """
        vcfg = self.config.vision_config
        pixel_values = torch.randn(2, getattr(vcfg, "num_channels", 3), vcfg.image_size, vcfg.image_size)
        with torch.no_grad():
            features = vision(pixel_values)
        return [
            GraphExport(
                role=VISION_ENCODER,
                module=vision,
                inputs={"pixel_values": pixel_values},
                output_names=["image_features"],
                dynamic_axes={"pixel_values": {0: tile_axis}, "image_features": {0: tile_axis}},
                summary="pixel_values -> image_features",
            ),
            self.projector_graph(projector, features, tile_axis),
            *self.text_graphs(),
        ]

    @staticmethod
    def projector_graph(projector: torch.nn.Module, features: torch.Tensor, axis: str) -> GraphExport:
        """image_features -> image_embeds, dynamic in the first axis (tiles, or patches)."""
        return GraphExport(
            role=PROJECTOR,
            module=projector,
            inputs={"image_features": features},
            output_names=["image_embeds"],
            dynamic_axes={"image_features": {0: axis}, "image_embeds": {0: axis}},
            summary="image_features -> image_embeds",
        )

    def text_graphs(self) -> list[GraphExport]:
        """The embedding and KV-cache decoder graphs, from ``self.model``'s input embeddings,
        :attr:`language_model` and :attr:`lm_head`: the same for every family."""
        from vlm_export.export.wrappers import DecoderWithCache, EmbedTokens, decoder_export_inputs

        dec = self.decoder_info()
        dec_inputs, dec_outputs, dec_axes = decoder_export_inputs(
            dec.hidden_size, dec.num_layers, dec.num_kv_heads, dec.head_dim
        )
        return [
            GraphExport(
                role=EMBED_TOKENS,
                module=EmbedTokens(self.model.get_input_embeddings()),
                inputs={"input_ids": torch.randint(0, dec.vocab_size, (2, 5))},
                output_names=["inputs_embeds"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence_length"},
                    "inputs_embeds": {0: "batch", 1: "sequence_length"},
                },
                summary="input_ids -> inputs_embeds",
            ),
            GraphExport(
                role=DECODER,
                module=DecoderWithCache(self.language_model, self.lm_head, dec.num_layers),
                inputs=dec_inputs,
                output_names=dec_outputs,
                dynamic_axes=dec_axes,
                summary="inputs_embeds, attention_mask, position_ids, past -> logits, present",
            ),
        ]

    @property
    def language_model(self) -> torch.nn.Module:
        """The decoder stack without its head (``model.model.language_model`` in most VLMs)."""
        return self.model.model.language_model

    @property
    def lm_head(self) -> torch.nn.Module:
        """The vocabulary projection (``model.lm_head`` in most VLMs)."""
        return self.model.lm_head

    # ---- images in the prompt ----------------------------------------------------------------------
    @abstractmethod
    def image_tokens(self, processor: Any) -> ImageTokens:
        """Placeholder text, image token and tokens per image, as the HF processor expands them."""

    @abstractmethod
    def preprocessing(self, processor: Any) -> dict[str, Any]:
        """The runtime preprocessor's kind and parameters, read from the HF image processor."""

    def prompt_layout(self, processor: Any) -> list[str] | None:
        """How the HF processor assembles ``text=`` and images when there is no chat template (see
        :class:`~vlm_export.manifest.TextInfo`); None means the prompt carries one placeholder per image."""
        return None

    # ---- parity ----------------------------------------------------------------------------------
    def reference_generate(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None, max_new_tokens: int
    ) -> list[int]:
        """transformers' greedy continuation of already-prepared inputs (new tokens only)."""
        from vlm_export.export.reference import greedy_generate

        images = {} if pixel_values is None else self.reference_image_inputs(pixel_values)
        return greedy_generate(self.model, max_new_tokens, input_ids=input_ids, **images)

    def reference_image_inputs(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The runtime's pixel values as the transformers model's ``generate`` takes them."""
        return {"pixel_values": pixel_values}

    @classmethod
    def stage_modules(cls, model: torch.nn.Module) -> dict[str, torch.nn.Module]:
        """Submodules of the transformers model that correspond to pipeline stages, so benchmarks can
        time PyTorch per stage with forward hooks. Optional: an empty dict times nothing per stage."""
        return {}

    # ---- tests -----------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def tiny_checkpoints(cls) -> list[TinyCheckpoint]:
        """Random-weight checkpoints covering this family's variants; every family needs at least one."""
