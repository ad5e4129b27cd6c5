"""Train the shipped default model (``tiny-shapes``) on the synthetic shapes task, from a seed, on CPU.

A real ``LlavaForConditionalGeneration`` (CLIP tower with 16-pixel patches, GELU MLP projector, Llama
decoder with grouped-query attention) and a word-level tokenizer, saved in Hugging Face format so plain
transformers loads it. The loss covers the answer words and ``</s>`` only. Model selection uses the
validation split; the model card reports the test split, which training never sees.

Two stages, as LLaVA itself starts from a pretrained vision tower: (1) the CLIP tower alone learns to
tag each patch with the shape and colour it holds (a linear head on its last layer, thrown away after),
(2) with the tower frozen (as LLaVA keeps its CLIP tower frozen), the projector and the decoder learn
to answer. Without stage 1, a from-scratch run stalls at chance on "which
shape is red?" for thousands of steps: the answer loss reaches the tower only through attention the
decoder has not learnt yet, while the tower alone learns shapes in a few hundred steps.

Greedy exact match is computed with one teacher-forced forward pass: greedy decoding reproduces the
answer and ``</s>`` exactly when every one of those tokens is the arg-max under teacher forcing, so the
two measures are equal, and the forced one runs batched.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from vlm_export.models.llava import LLAVA_CHAT_TEMPLATE
from vlm_export.shapes import task

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
UNK, BOS, EOS, PAD, IMAGE = range(len(SPECIAL_TOKENS))
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TrainConfig:
    seed: int = 0
    minutes: float = 60.0  # a safety cap: the schedule is max_steps long, so a run is reproducible
    max_steps: int = 8_000
    batch_size: int = 64
    learning_rate: float = 7e-4
    warmup_steps: int = 500
    weight_decay: float = 0.01
    eval_every: int = 250
    vision_steps: int = 400  # stage 1: patch tagging
    vision_learning_rate: float = 1e-3
    validation_samples: int = 512
    target_accuracy: float = 99.5  # stop early once validation reaches it
    threads: int = 2
    vision_hidden: int = 128
    vision_layers: int = 2
    text_hidden: int = 128
    text_layers: int = 4
    text_intermediate: int = 384


@dataclass
class TrainResult:
    config: TrainConfig
    steps: int
    seconds: float
    best_step: int
    validation_accuracy: float
    stopped: str
    history: list[dict] = field(default_factory=list)


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in task.vocabulary():
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS)]
    )
    return tokenizer


def build_model_and_processor(cfg: TrainConfig):
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from vlm_export.testing.tokenizer import hf_fast_tokenizer

    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden,
        intermediate_size=4 * cfg.vision_hidden,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=4,
        image_size=task.IMAGE_SIZE,
        patch_size=task.CELL,
        projection_dim=cfg.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        pad_token_id=PAD,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.max_new_tokens = 4
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    hf_tok = hf_fast_tokenizer(tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": task.IMAGE_SIZE},
        crop_size={"height": task.IMAGE_SIZE, "width": task.IMAGE_SIZE},
        resample=3,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=hf_tok,
        patch_size=task.CELL,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, processor


def pixels(samples: list[task.Sample]) -> torch.Tensor:
    """CLIP normalisation of 64x64 images (equal to the saved CLIPImageProcessor: no resize, no crop)."""
    arrays = np.stack([np.asarray(s.image(), dtype=np.float32) / 255.0 for s in samples])
    arrays = (arrays - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(arrays.transpose(0, 3, 1, 2).copy())


class Batcher:
    """Token ids for prompts and answers, tokenized once per distinct question through the processor."""

    def __init__(self, processor) -> None:
        self.processor = processor
        self._prompts: dict[str, list[int]] = {}
        self._answers: dict[str, list[int]] = {}
        self._blank = task.make_sample("train", 0).image()

    def prompt_ids(self, question: str) -> list[int]:
        if question not in self._prompts:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            ids = self.processor(text=text, images=self._blank, return_tensors="pt")["input_ids"][0]
            self._prompts[question] = ids.tolist()
        return self._prompts[question]

    def answer_ids(self, answer: str) -> list[int]:
        if answer not in self._answers:
            ids = self.processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
            self._answers[answer] = [*ids, EOS]
        return self._answers[answer]

    def __call__(self, samples: list[task.Sample]) -> dict[str, torch.Tensor]:
        rows = [(self.prompt_ids(s.question), self.answer_ids(s.answer)) for s in samples]
        width = max(len(p) + len(a) for p, a in rows)
        input_ids = torch.full((len(rows), width), PAD)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (prompt, answer) in enumerate(rows):
            seq = prompt + answer
            input_ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(prompt) : len(seq)] = torch.tensor(answer)
            mask[i, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels(samples)}


def patch_targets(samples: list[task.Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch: shape kind (0 = empty, 1.. = SHAPES) and colour (0 = none, 1.. = COLOURS)."""
    cells = task.GRID * task.GRID
    kinds = torch.zeros(len(samples), cells, dtype=torch.long)
    colours = torch.zeros(len(samples), cells, dtype=torch.long)
    names = list(task.COLOURS)
    for i, sample in enumerate(samples):
        for shape in sample.shapes:
            cell = shape.row * task.GRID + shape.col
            kinds[i, cell] = 1 + task.SHAPES.index(shape.kind)
            colours[i, cell] = 1 + names.index(shape.colour)
    return kinds, colours


def pretrain_vision(model, cfg: TrainConfig, log: Callable[[dict], None] | None = None) -> None:
    """Stage 1: the vision tower tags every patch with its shape and colour through a throw-away head."""
    tower = model.model.vision_tower
    head = torch.nn.Linear(cfg.vision_hidden, 1 + len(task.SHAPES) + 1 + len(task.COLOURS))
    optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=cfg.vision_learning_rate)
    split = 1 + len(task.SHAPES)
    tower.train()
    for step in range(cfg.vision_steps):
        samples = [task.make_sample("train", 10_000_000 + step * cfg.batch_size + i) for i in range(cfg.batch_size)]
        kinds, colours = patch_targets(samples)
        logits = head(tower(pixels(samples)).last_hidden_state[:, 1:])
        loss = torch.nn.functional.cross_entropy(logits[..., :split].flatten(0, 1), kinds.flatten())
        loss = loss + torch.nn.functional.cross_entropy(logits[..., split:].flatten(0, 1), colours.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if log and (step + 1) % 100 == 0:
            log({"stage": "vision", "step": step + 1, "loss": round(loss.item(), 4)})


@torch.no_grad()
def forced_exact_match(model, batcher: Batcher, samples: list[task.Sample], batch_size: int = 128) -> dict:
    """Greedy exact-answer accuracy in percent, overall and per question type (see the module docstring)."""
    model.eval()
    hits: dict[str, list[bool]] = {t: [] for t in task.QUESTION_TYPES}
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = batcher(chunk)
        labels = batch.pop("labels")
        logits = model(**batch).logits
        predicted = logits[:, :-1].argmax(-1)
        target = labels[:, 1:]
        ok = ((predicted == target) | (target == -100)).all(dim=1)
        for sample, good in zip(chunk, ok.tolist()):
            hits[sample.question_type].append(good)
    model.train()
    every = [h for v in hits.values() for h in v]
    return {
        "accuracy": 100.0 * sum(every) / len(every),
        "per_type": {k: 100.0 * sum(v) / len(v) for k, v in hits.items() if v},
    }


def train(
    cfg: TrainConfig, out: Path | None = None, log: Callable[[dict], None] | None = None
) -> tuple[object, object, TrainResult]:
    """Train from ``cfg.seed``; returns the best model (by validation accuracy), its processor, the record.

    ``out`` receives the checkpoint all at once when training ends (a temporary folder is renamed into
    place), so an interrupted run never leaves a half-written or mixed checkpoint behind.
    """
    if out is None:
        return _train(cfg, None, log)
    from vlm_export.export.atomic import atomic_folder

    with atomic_folder(Path(out), overwrite=True) as tmp:
        return _train(cfg, tmp, log)


def _train(cfg: TrainConfig, out: Path | None, log: Callable[[dict], None] | None):
    torch.set_num_threads(cfg.threads)
    model, processor = build_model_and_processor(cfg)
    batcher = Batcher(processor)
    validation = list(task.samples("validation", cfg.validation_samples))
    started = time.perf_counter()
    pretrain_vision(model, cfg, log)
    model.model.vision_tower.requires_grad_(False)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in trainable if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
        betas=(0.9, 0.98),
    )
    budget = cfg.minutes * 60.0
    total_steps = cfg.max_steps

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.learning_rate * (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return cfg.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    best = {"accuracy": -1.0, "step": 0, "state": None}
    history: list[dict] = []
    model.train()
    step = 0
    next_index = 0
    stopped = "schedule complete"
    while step < total_steps:
        batch_samples = [task.make_sample("train", next_index + i) for i in range(cfg.batch_size)]
        next_index += cfg.batch_size
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = model(**batcher(batch_samples)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % cfg.eval_every == 0 or step == total_steps or time.perf_counter() - started > budget:
            scores = forced_exact_match(model, batcher, validation)
            record = {
                "step": step,
                "seconds": round(time.perf_counter() - started, 1),
                "loss": round(loss.item(), 4),
                **scores,
            }
            history.append(record)
            if log:
                log(record)
            if scores["accuracy"] > best["accuracy"]:
                best = {"accuracy": scores["accuracy"], "step": step, "state": _copy_state(model)}
            if scores["accuracy"] >= cfg.target_accuracy:
                stopped = f"validation accuracy reached {cfg.target_accuracy}%"
                break
        if time.perf_counter() - started > budget:
            stopped = "time budget"
            break
    seconds = time.perf_counter() - started
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    result = TrainResult(cfg, step, seconds, best["step"], best["accuracy"], stopped, history)
    if out is not None:
        save(model, processor, out)
        (out / "training.json").write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    return model, processor, result


def _copy_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _jsonable(result: TrainResult) -> dict:
    data = asdict(result)
    data["seconds"] = round(result.seconds, 1)
    return data


def save(model, processor, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    processor.save_pretrained(out)
