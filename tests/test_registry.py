"""The family registry: lookup by architecture, clear refusal, and no family without a tiny model."""

from __future__ import annotations

import pytest
from transformers import BertConfig, LlavaConfig

from vlm_export.errors import UnsupportedModelError
from vlm_export.models import families, family_for, supported_architectures
from vlm_export.models.llava import LlavaFamily


def test_every_family_has_tiny_checkpoints():
    """test_parity is parametrized over these, so no family can be registered untested."""
    for name, family in families().items():
        tiny = family.tiny_checkpoints()
        assert tiny, f"family {name} declares no tiny checkpoint"
        assert len({t.name for t in tiny}) == len(tiny)


def test_exactly_one_default_tiny_checkpoint():
    defaults = [t.name for f in families().values() for t in f.tiny_checkpoints() if "default" in t.tags]
    assert len(defaults) == 1


def test_lookup_by_architecture_and_model_type():
    config = LlavaConfig()
    config.architectures = ["LlavaForConditionalGeneration"]
    assert family_for(config) is LlavaFamily
    config.architectures = None
    assert family_for(config) is LlavaFamily  # falls back to model_type


def test_unknown_architecture_lists_supported():
    config = BertConfig()
    config.architectures = ["BertForMaskedLM"]
    with pytest.raises(UnsupportedModelError, match="BertForMaskedLM") as info:
        family_for(config)
    for arch in supported_architectures():
        assert arch in str(info.value)
