"""SmolVLM2 checkpoints without SmolVLMProcessor: the stand-in must stay the same code, and say when not.

Parity (graphs, greedy tokens, prompts) runs in the registry-wide tests on the ``smolvlm2-split`` model.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest

from vlm_export.errors import ModelLoadError
from vlm_export.models.smolvlm import SmolVLMFamily


def _functions(module_name: str, names: dict[str, str]) -> dict[str, str]:
    """ast dumps of the module's top-level functions (source read as text: the SmolVLM processor module
    cannot be imported without torchvision), with parameter spellings normalised."""
    import importlib.util

    spec = importlib.util.find_spec(module_name)
    tree = ast.parse(Path(spec.origin).read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            node.returns = None
            text = ast.dump(node)
            for old, new in names.items():
                text = text.replace(old, new)
            out[node.name] = text
    return out


def test_smolvlm_processor_code_is_idefics3s():
    """SmolVLMProcessor's prompt expansion and SmolVLMImageProcessor are Idefics3's (transformers'
    own code): the stand-in is only valid while this holds."""
    from transformers.models.idefics3 import image_processing_idefics3
    from transformers.models.smolvlm import image_processing_smolvlm

    spelling = {"global_img_token": "global_image_token"}
    wanted = {"_prompt_split_image": "", "_prompt_single_image": "", "get_image_prompt_string": "", **spelling}
    smol = _functions("transformers.models.smolvlm.processing_smolvlm", wanted)
    idefics = _functions("transformers.models.idefics3.processing_idefics3", wanted)
    assert set(smol) == {"_prompt_split_image", "_prompt_single_image", "get_image_prompt_string"}
    assert smol == {k: idefics[k] for k in smol}

    def methods(cls, prefix: str) -> dict[str, str]:
        return {
            name: ast.dump(ast.parse(inspect.getsource(fn).replace(prefix, "X").strip()))
            for name, fn in vars(cls).items()
            if inspect.isfunction(fn)
        }

    ours = methods(image_processing_smolvlm.SmolVLMImageProcessor, "SmolVLM")
    theirs = methods(image_processing_idefics3.Idefics3ImageProcessor, "Idefics3")
    assert ours.keys() == theirs.keys() and ours == theirs


def test_tiny_smolvlm_processor_loads_without_torchvision(tiny_checkpoint):
    processor = SmolVLMFamily.load_processor(str(tiny_checkpoint("smolvlm2-split")))
    assert processor.image_seq_len == 16  # from processor_config.json, not the class default (169)
    assert processor.chat_template.startswith("<|im_start|>")


def test_renamed_image_token_is_refused(tiny_checkpoint, tmp_path):
    import shutil

    folder = tmp_path / "renamed"
    shutil.copytree(tiny_checkpoint("smolvlm2-split"), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["extra_special_tokens"]["image_token"] = "<pad>"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="image_token"):
        SmolVLMFamily.load_processor(str(folder))
