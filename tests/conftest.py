"""Shared fixtures: every tiny checkpoint is built once per session, and exported once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlm_export.models import families

TINY = {tiny.name: (family, tiny) for family in families().values() for tiny in family.tiny_checkpoints()}
DEFAULT_TINY = next(name for name, (_, tiny) in TINY.items() if "default" in tiny.tags)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """tiny_checkpoint(name) -> folder of a random-weight HF checkpoint (seed 0)."""
    root = tmp_path_factory.mktemp("checkpoints")

    def build(name: str) -> Path:
        folder = root / name
        if not folder.exists():
            TINY[name][1].build(folder, 0)
        return folder

    return build


def hf_processor(folder: Path):
    """transformers' processor for a tiny checkpoint, loaded the way its family loads it (AutoProcessor for
    all but SmolVLM, whose processor class needs torchvision: ``Idefics3Processor`` reads its files, the
    same image path, guarded by ``test_smolvlm_processor_code_is_idefics3s``)."""
    from transformers import AutoConfig

    from vlm_export.models import family_for

    return family_for(AutoConfig.from_pretrained(folder)).load_processor(str(folder))


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_checkpoint):
    """exported(name) -> folder written by convert (parity gate on)."""
    from vlm_export.export.convert import convert

    root = tmp_path_factory.mktemp("exports")
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            done[name] = convert(str(tiny_checkpoint(name)), root / name).folder
        return done[name]

    return get


def picture(seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """Deterministic test images of varied sizes, colours and shapes."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, max(1, size[0] // 2))), int(rng.integers(0, max(1, size[1] // 2)))
        w, h = int(rng.integers(1, max(2, size[0] // 2))), int(rng.integers(1, max(2, size[1] // 2)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    return image.convert(mode) if mode != "RGB" else image


def real_tiles(pixel_values: np.ndarray) -> np.ndarray:
    """HF processors' pixel_values as the runtime's (tiles, C, H, W): batch and image axes flattened and
    all-zero padding tiles dropped (transformers drops them before the vision tower too)."""
    tiles = pixel_values.reshape(-1, *pixel_values.shape[-3:])
    return tiles[np.abs(tiles).reshape(len(tiles), -1).sum(axis=1) != 0]


def cli(*args: str, check: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``vlm-export`` console script (the real entry point)."""
    exe = shutil.which("vlm-export", path=str(Path(sys.executable).parent)) or shutil.which("vlm-export")
    command = [exe] if exe else [sys.executable, "-m", "vlm_export"]
    result = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"vlm-export {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result
