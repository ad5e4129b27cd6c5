"""Tokenizer, chat template and prompt assembly, with the semantics of transformers' processors.

The rules reproduced here (each one checked against transformers by the tests):
* chat templates render in a sandboxed Jinja environment with ``trim_blocks``/``lstrip_blocks``, the
  ``loopcontrols`` extension, ``raise_exception``, ``strftime_now`` and a non-escaping ``tojson``, and see
  the tokenizer's special tokens as variables;
* a rendered chat that already starts with the BOS token is tokenized without special tokens (the
  processor's rule), anything else with them;
* each image placeholder is replaced by the text its preprocessor produced, then the whole string is
  tokenized at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from vlm_export.errors import PromptError
from vlm_export.manifest import ImageTokens, TextInfo


@lru_cache(maxsize=8)
def _compile_template(source: str):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class GenerationTag(jinja2.ext.Extension):
        """Accepts ``{% generation %}`` blocks (assistant masks) and renders their body unchanged."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def user_message(prompt: str, num_images: int) -> list[dict]:
    """One user turn with the images first, as transformers' chat examples and processors place them."""
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


class TextProcessor:
    """Everything between a user's prompt and token ids, and back."""

    def __init__(self, folder: Path, info: TextInfo, image_tokens: ImageTokens | None) -> None:
        self.info = info
        self.image_tokens = image_tokens
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / info.tokenizer_file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    # ---- prompt -> text ------------------------------------------------------------------------
    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if not self.info.chat_template:
            raise PromptError("this model has no chat template", fix="pass the prompt verbatim with --raw")
        template = _compile_template(self.info.chat_template)
        return template.render(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **self.info.special_tokens,
        )

    def expand_images(self, text: str, image_texts: Sequence[str]) -> str:
        """Replace the n-th placeholder with the n-th image's prompt text."""
        placeholder = self.image_tokens.placeholder if self.image_tokens else None
        found = text.count(placeholder) if placeholder else 0
        if found != len(image_texts):
            raise PromptError(
                f"the prompt has {found} image placeholder(s) {placeholder!r} "
                f"but {len(image_texts)} image(s) were given",
                fix=f"write one {placeholder} per image" if placeholder else "this model takes no images",
            )
        if not image_texts:
            return text
        pieces = text.split(placeholder)
        out = [pieces[0]]
        for image_text, piece in zip(image_texts, pieces[1:]):
            out.extend((image_text, piece))
        return "".join(out)

    def layout_ids(self, prompt: str, images: Sequence[tuple[str, list[int] | None]]) -> tuple[list[int], str]:
        """Token ids (and a readable text) for a template-less model, following ``prompt_layout``.

        ``images`` holds each image's prompt text and, where the preprocessor made them, its token ids.
        """
        ids: list[int] = []
        shown: list[str] = []
        for part in self.info.prompt_layout or ():
            if part == "images":
                for text, image_ids in images:
                    ids += (
                        image_ids
                        if image_ids is not None
                        else self.tokenizer.encode(text, add_special_tokens=False).ids
                    )
                    shown.append(text)
            elif part in ("text", "text-plain"):
                ids += self.tokenizer.encode(prompt, add_special_tokens=part == "text").ids
                shown.append(prompt)
            elif part.startswith("token:"):
                token_id = self.tokenizer.token_to_id(part[len("token:") :])
                if token_id is None:
                    raise PromptError(f"the prompt layout names {part!r}, which the tokenizer does not have")
                ids.append(token_id)
                shown.append(part[len("token:") :])
            else:
                raise PromptError(f"unknown prompt layout part {part!r}", fix="upgrade vlm-export")
        return ids, "".join(shown)

    def encode(self, text: str, chat: bool) -> list[int]:
        bos = self.info.bos_token
        add_special = not (chat and bos is not None and text.startswith(bos))
        return self.tokenizer.encode(text, add_special_tokens=add_special).ids

    # ---- ids -> text -----------------------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return clean_up_tokenization(text) if self.info.clean_up_tokenization_spaces else text


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization`` (spaces before punctuation and contractions)."""
    for before, after in (
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
        (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ):  # fmt: skip
        text = text.replace(before, after)
    return text


class StreamDecoder:
    """Turns a growing list of token ids into text pieces, holding back incomplete UTF-8 sequences."""

    def __init__(self, text: TextProcessor) -> None:
        self.text = text
        self.ids: list[int] = []
        self.emitted = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decoded = self.text.decode(self.ids)
        if decoded.endswith("\ufffd"):
            return ""
        piece, self.emitted = decoded[self.emitted :], len(decoded)
        return piece

    def flush(self) -> str:
        decoded = self.text.decode(self.ids)
        piece, self.emitted = decoded[self.emitted :], len(decoded)
        return piece
