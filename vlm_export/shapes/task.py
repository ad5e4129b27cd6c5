"""The synthetic visual-QA task the shipped model is trained and evaluated on (numpy + Pillow only).

Each sample is drawn from its own generator seeded by ``(split, index)``, so a split is a fixed,
reproducible sequence and two splits can never share a seed. An image is a 64x64 noisy dark canvas cut
into a 4x4 grid of 16-pixel cells that line up with the vision tower's 16-pixel patches; one to three
shapes (circle, square, triangle; all different, all in different colours) sit in different cells, each
with its own size (11 to 15 px) and offset. Keeping every shape inside one patch is the "easier to read" choice that
makes 95% reachable in minutes on 2 cores: a first trial with free placement and 8-pixel patches
plateaued near 70% because the decoder had to bind a question to a shape spread over several tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
CELL = 16  # = the vision tower's patch size
GRID = IMAGE_SIZE // CELL

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "green": (45, 185, 70),
    "blue": (55, 95, 235),
    "yellow": (235, 215, 50),
    "purple": (160, 70, 210),
    "white": (235, 235, 235),
}
NUMBERS = ("zero", "one", "two", "three")
QUESTION_TYPES = ("colour", "shape", "count", "position")

# Split ids feed the first word of every sample's seed: train, validation (model selection while
# training) and test (the held-out split that `vlm-export eval` scores) never overlap.
SPLITS = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    row: int
    col: int
    size: int

    @property
    def position(self) -> str:
        return ("top" if self.row < GRID // 2 else "bottom") + " " + ("left" if self.col < GRID // 2 else "right")


@dataclass(frozen=True)
class Sample:
    split: str
    index: int
    shapes: tuple[Shape, ...]
    question_type: str
    question: str
    answer: str
    noise_seed: int

    def image(self) -> Image.Image:
        return render(self.shapes, self.noise_seed)


def _ask(kind: str, rng: np.random.Generator, shapes: tuple[Shape, ...]) -> tuple[str, str]:
    target = shapes[int(rng.integers(len(shapes)))]
    if kind == "colour":
        return f"what colour is the {target.kind}?", target.colour
    if kind == "shape":
        return f"which shape is {target.colour}?", target.kind
    if kind == "count":
        return "how many shapes are there?", NUMBERS[len(shapes)]
    return f"where is the {target.kind}?", target.position


def make_sample(split: str, index: int) -> Sample:
    """Sample ``index`` of ``split``: the same arguments give the same sample on every machine."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    rng = np.random.default_rng([SPLITS[split], index])
    count = int(rng.integers(1, 4))
    kinds = rng.permutation(len(SHAPES))[:count]
    colours = rng.permutation(len(COLOURS))[:count]
    cells = rng.permutation(GRID * GRID)[:count]
    names = list(COLOURS)
    shapes = tuple(
        Shape(SHAPES[k], names[c], int(cell) // GRID, int(cell) % GRID, int(rng.integers(11, 16)))
        for k, c, cell in zip(kinds, colours, cells)
    )
    question_type = QUESTION_TYPES[int(rng.integers(len(QUESTION_TYPES)))]
    question, answer = _ask(question_type, rng, shapes)
    return Sample(split, index, shapes, question_type, question, answer, int(rng.integers(2**31)))


def samples(split: str, n: int, start: int = 0) -> Iterator[Sample]:
    for index in range(start, start + n):
        yield make_sample(split, index)


def render(shapes: tuple[Shape, ...], noise_seed: int) -> Image.Image:
    rng = np.random.default_rng(noise_seed)
    base = rng.integers(20, 70, size=3)
    canvas = np.clip(base + rng.normal(0, 8, (IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        slack = CELL - shape.size
        x0 = shape.col * CELL + int(rng.integers(0, slack + 1))
        y0 = shape.row * CELL + int(rng.integers(0, slack + 1))
        x1, y1 = x0 + shape.size - 1, y0 + shape.size - 1
        fill = tuple(int(np.clip(v + rng.integers(-15, 16), 0, 255)) for v in COLOURS[shape.colour])
        if shape.kind == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif shape.kind == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=fill)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 4, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def vocabulary() -> list[str]:
    """Every word a prompt or an answer of the task can contain (the word-level tokenizer's vocabulary)."""
    words = {"USER", "ASSISTANT", ":", "?"}
    for template in ("what colour is the", "which shape is", "how many shapes are there", "where is the"):
        words.update(template.split())
    words.update(SHAPES, COLOURS, NUMBERS, ("top", "bottom", "left", "right"))
    return sorted(words)


def normalise_answer(text: str) -> str:
    """Exact-answer scoring compares lower-cased words, ignoring spacing and a trailing full stop."""
    return " ".join(text.lower().replace(".", " ").split())
