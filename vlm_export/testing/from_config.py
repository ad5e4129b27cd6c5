"""Random-weight checkpoints at real model shapes, from a folder that has every file but the weights.

Benchmarks need real sizes (latency does not depend on weight values) and no hub: ``shared/configs/``
folders hold config, tokenizer, processor and chat template; this adds seeded random weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def checkpoint_from_config(
    config_dir: Path, out: Path, seed: int = 0, preprocessor: dict[str, Any] | None = None
) -> Path:
    """Write ``out`` = the files of ``config_dir`` plus random weights; reuses ``out`` if complete.

    ``preprocessor`` overrides keys of ``preprocessor_config.json`` (``{"do_image_splitting": False}``
    for the one-tile SmolVLM bench), so every tool that reads the checkpoint sees the same setting.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config_dir, out = Path(config_dir), Path(out)
    if (out / "config.json").is_file() and any((out / w).exists() for w in WEIGHT_FILES):
        _write_processor_settings(config_dir, out, preprocessor)  # the weights stay; settings may change
        return out
    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for item in config_dir.iterdir():
        if item.is_file() and item.name != "config.json":
            shutil.copyfile(item, tmp / item.name)  # not copy2: shared/ files are read-only
    _write_processor_settings(config_dir, tmp, preprocessor)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _write_processor_settings(config_dir: Path, folder: Path, preprocessor: dict[str, Any] | None) -> None:
    """preprocessor_config.json = the shared one with ``preprocessor``'s keys replaced."""
    source = config_dir / "preprocessor_config.json"
    if not source.is_file():
        return
    settings = {**json.loads(source.read_text()), **(preprocessor or {})}
    (folder / "preprocessor_config.json").write_text(json.dumps(settings, indent=2) + "\n")
