"""The model card of ``tiny-shapes``: how it was made and what it scores, measured when it is written."""

from __future__ import annotations

import json
from pathlib import Path

from vlm_export.report.environment import cpu_info
from vlm_export.shapes import task
from vlm_export.shapes.evaluate import Scored, reference_answers

TEST_SAMPLES = 500


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6


def write_card(folder: Path) -> dict:
    """Score the saved checkpoint with transformers' ``generate`` on the test split; write README.md
    and metrics.json. Reads the run's record from ``training.json``, so it can be regenerated."""
    from types import SimpleNamespace

    record = json.loads((folder / "training.json").read_text())
    cfg = SimpleNamespace(**record["config"])
    result = SimpleNamespace(**{k: v for k, v in record.items() if k != "config"})
    samples = list(task.samples("test", TEST_SAMPLES))
    scored = Scored.of(samples, reference_answers(str(folder), samples))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    import torch
    from safetensors.torch import load_file

    params = sum(t.numel() for t in load_file(str(folder / "model.safetensors")).values())
    figures = {
        "test_samples": TEST_SAMPLES,
        "accuracy": scored.accuracy,
        "per_type": scored.per_type,
        "parameters": params,
        "training_minutes": round(result.seconds / 60, 1),
        "steps": result.steps,
        "best_step": result.best_step,
        "validation_accuracy": round(result.validation_accuracy, 2),
        "cpu": cpu_info()["model"],
        "torch_threads": cfg.threads,
        "torch": torch.__version__,
    }
    (folder / "metrics.json").write_text(json.dumps(figures, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in scored.per_type.items())
    text = f"""---
license: apache-2.0
library_name: transformers
pipeline_tag: image-text-to-text
tags: [llava, synthetic, vlm-export]
---

# tiny-shapes

The default model of vlm-export: a {params / 1e6:.2f} M-parameter
`LlavaForConditionalGeneration` trained from scratch on a synthetic visual-QA task, small enough to ship
inside the Python package ({_size_mb(folder):.1f} MB on disk) and good enough that a point of accuracy
lost to quantization shows.

## Architecture
- Vision: CLIP ViT, {config.vision_config.num_hidden_layers} layers, width {config.vision_config.hidden_size},
  {task.IMAGE_SIZE}x{task.IMAGE_SIZE} px images, {task.CELL} px patches -> {(task.IMAGE_SIZE // task.CELL) ** 2}
  image tokens (last layer, CLS dropped).
- Projector: 2-layer GELU MLP.
- Decoder: Llama, {config.text_config.num_hidden_layers} layers, width {config.text_config.hidden_size},
  {config.text_config.num_attention_heads} heads / {config.text_config.num_key_value_heads} KV heads (GQA).
- Tokenizer: word-level (`tokenizers` WordLevel + Whitespace), {config.text_config.vocab_size} tokens,
  `<s>` added by the post-processor, LLaVA-1.5 style chat template (`USER: <image>\\n... ASSISTANT:`).

## Task
`vlm_export/shapes/task.py`: 64x64 noisy dark pictures cut into a 4x4 grid of 16-pixel cells that line
up with the patches; 1 to 3 shapes (circle, square, triangle; 6 colours; all different) of 11 to 15 px,
each in its own cell with a random offset. Questions and one- or two-word answers:

| type | question | answers |
|---|---|---|
| colour | what colour is the circle? | {", ".join(task.COLOURS)} |
| shape | which shape is red? | {", ".join(task.SHAPES)} |
| count | how many shapes are there? | one, two, three |
| position | where is the triangle? | top/bottom left/right (the quadrant of its cell) |

Every sample has its own seed `(split, index)`; train, validation and test splits never share one.
What was made easier than a first trial (`../shared/train-notes.md`): shapes sit inside one patch each
(free placement with 8 px patches plateaued near 70% with several shapes), and the decoder has 4 layers.

## Training
`vlm-export train-tiny OUT --seed {cfg.seed} --max-steps {cfg.max_steps}` (or `make train-tiny`), on CPU:
1. the CLIP tower alone learns to tag each 16-px patch with its shape and colour through a linear head
   that is then thrown away ({cfg.vision_steps} steps, lr {cfg.vision_learning_rate:g}); trained end to end
   instead, the tower never learnt shapes: the answer loss reaches it only through attention the decoder
   has not learnt yet, and "which shape is red?" stayed at chance for over a thousand steps;
2. with the tower frozen (as LLaVA keeps CLIP frozen), the projector and decoder learn to answer: AdamW
   (lr {cfg.learning_rate:g}, {cfg.warmup_steps} warmup steps, cosine to 5% over {cfg.max_steps} steps,
   weight decay {cfg.weight_decay:g}), batch {cfg.batch_size}, loss on the answer and `</s>` only, fresh
   samples every step, model selection on {cfg.validation_samples} validation samples, stop once validation
   reaches {cfg.target_accuracy:g}%.

This checkpoint: {result.steps} steps in {result.seconds / 60:.1f} minutes on {cfg.threads} CPU threads
({figures["cpu"]}), stopped by: {result.stopped}; best validation accuracy
{result.validation_accuracy:.1f}% at step {result.best_step}.

## Accuracy
Exact answer, greedy, transformers `generate`, {TEST_SAMPLES} test samples:

| question type | accuracy % |
|---|---|
{rows}
| **all** | **{scored.accuracy:.1f}** |

Reproduce with `vlm-export convert tiny-shapes OUT && vlm-export eval OUT --reference tiny-shapes`.
"""
    (folder / "README.md").write_text(text)
    return figures
