"""VLMPipeline: the exported graphs stitched back into a generating model, without torch.

Flow of one request (each step is its own method, so reports can time it):

    preprocess -> tokenize -> encode_images -> project -> embed -> merge -> prefill -> decode_step ...
                                                                                  \\-> sample  -/

Images and text meet in :meth:`merge`: the projector's rows replace the embeddings at the image-token
positions, in order. The decoder graph takes the KV cache as inputs/outputs, or keeps it itself
(onnxruntime's in-place variant, OpenVINO's stateful model); prefill starts from an empty one. A pipeline
serves one request at a time.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlm_export.errors import PromptError
from vlm_export.manifest import DECODER, EMBED_TOKENS, PROJECTOR, VISION_ENCODER, Manifest
from vlm_export.runtimes.backends import Graph, create_backend
from vlm_export.runtimes.images import ImageInput, load_image
from vlm_export.runtimes.preprocessors import ProcessedImage, create_preprocessor
from vlm_export.runtimes.sampling import Sampler, SamplingParams
from vlm_export.runtimes.text import StreamDecoder, TextProcessor, user_message


@dataclass
class Timings:
    """Seconds per stage of one request.

    ``decode_steps`` holds each decode step's graph time (embedding + decoder); ``token_times`` the
    moment each token was handed out, so decode speed includes everything a caller waits for.
    """

    stages: dict[str, float] = field(default_factory=dict)
    decode_steps: list[float] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    cached_images: int = 0  # images whose embeddings came from the pipeline's cache

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - start

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {k: round(v, 6) for k, v in self.stages.items()}
        out["decode_tokens"] = len(self.decode_steps)
        out["cached_images"] = self.cached_images
        if self.decode_steps:
            out["decode"] = round(sum(self.decode_steps), 6)
            out["decode_s_per_token"] = round(float(np.median(self.decode_steps)), 6)
        if len(self.token_times) > 1:
            span = self.token_times[-1] - self.token_times[0]
            out["decode_tokens_per_s"] = round((len(self.token_times) - 1) / span, 3) if span > 0 else 0.0
        return out


@dataclass
class PreparedInputs:
    """A request after preprocessing and tokenization: what the graphs will be fed."""

    input_ids: np.ndarray  # (1, sequence) int64
    pixel_values: np.ndarray | None  # (tiles, channels, height, width) float32, all images in order
    prompt: str  # the text that was tokenized (template applied, placeholders expanded)
    images: list[tuple[str, int]] = field(default_factory=list)  # (content key, tiles) per image, in order


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str  # "eos", "length" or "stop"
    timings: dict[str, float | int]


class KVCache:
    """The decoder's past keys and values, fed back as the next step's inputs."""

    def __init__(self, arrays: dict[str, np.ndarray], length: int) -> None:
        self.arrays = arrays
        self.length = length

    @classmethod
    def empty(cls, manifest: Manifest, batch: int = 1) -> KVCache:
        dec = manifest.decoder
        shape = (batch, dec.num_kv_heads, 0, dec.head_dim)
        arrays = {
            f"past_key_values.{layer}.{kind}": np.zeros(shape, dtype=dec.kv_dtype)
            for layer in range(dec.num_layers)
            for kind in ("key", "value")
        }
        return cls(arrays, 0)

    def update(self, outputs: dict[str, np.ndarray], added: int) -> None:
        for name in self.arrays:
            self.arrays[name] = outputs["present" + name[len("past_key_values") :]]
        self.length += added


class VLMPipeline:
    """Loads an exported folder and generates text from a prompt and images."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        graphs: dict[str, Graph],
        backend_info: dict,
        vision_batch: int = 1,
        image_cache: int = 4,
    ) -> None:
        self.folder = folder
        self.vision_batch = vision_batch
        self.image_cache_size = image_cache
        self._image_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._kv_owner: KVCache | None = None  # the request whose cache a holds_kv_cache decoder has
        self.manifest = manifest
        self.graphs = graphs
        self.backend_info = backend_info
        self.text = TextProcessor(folder, manifest.text, manifest.image)
        self.preprocessor = (
            create_preprocessor(manifest.preprocessing, manifest.image)
            if manifest.preprocessing and manifest.image
            else None
        )

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        backend: str = "onnxruntime",
        threads: int | None = None,
        device: str = "CPU",
        verify: bool = True,
        vision_batch: int = 1,
        backend_options: dict | None = None,
        image_cache: int = 4,
    ) -> VLMPipeline:
        """Load ``folder`` (the output of ``vlm-export convert``).

        ``backend`` is ``onnxruntime`` (default) or ``openvino`` (``device`` "CPU", "GPU", ...; it runs a
        graph's OpenVINO IR when the manifest has one, the ONNX file otherwise); ``backend_options`` are
        passed to the backend (OpenVINO: ``{"precision": "bf16"}``; f32 by default).

        ``verify`` checks every graph file against the manifest's sha256 first (reads each byte once).
        ``vision_batch`` is how many image tiles go through the vision encoder per call. One at a time is
        both faster and far leaner on CPUs: SmolVLM-256M shapes, 17 tiles of 512 px, 2 threads: 25.1 s
        and 1.3 GiB peak one by one, 30.2 s / 1.7 GiB by 4, 36.0 s / 3.3 GiB all at once.

        ``image_cache`` is how many images' projected embeddings are kept, keyed by their decoded pixels, so
        a follow-up question about the same picture skips the vision encoder (0 turns it off).
        """
        folder = Path(folder)
        manifest = Manifest.load(folder)
        manifest.verify_files(folder, check_hashes=verify)
        for role in (EMBED_TOKENS, DECODER):
            manifest.graph(role)
        runner = create_backend(backend, threads=threads, device=device, **(backend_options or {}))
        graphs = {
            role: runner.load(folder / info.file, info, manifest.decoder if role == DECODER else None)
            for role, info in manifest.graphs.items()
        }
        return cls(
            folder, manifest, graphs, runner.describe(), vision_batch=max(1, vision_batch), image_cache=image_cache
        )

    # ---- stages ----------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[ImageInput]) -> list[ProcessedImage]:
        if images and self.preprocessor is None:
            raise PromptError("this model takes no images")
        limit = self.manifest.image.max_images if self.manifest.image else None
        if limit is not None and len(images) > limit:
            raise PromptError(
                f"this model takes at most {limit} image(s) per prompt, {len(images)} were given",
                fix="ask about one image at a time",
            )
        processed = []
        for image in images:
            decoded = load_image(image)
            item = self.preprocessor(decoded)
            item.key = _image_key(decoded) if self.image_cache_size > 0 else ""
            processed.append(item)
        return processed

    def tokenize(self, prompt: str, processed: Sequence[ProcessedImage], raw: bool = False) -> tuple[np.ndarray, str]:
        """Chat mode (default) puts one placeholder per image before the prompt, as transformers does.

        Models without a chat template assemble the prompt as their processor does with ``text=``
        (``prompt_layout``; without images, processors just tokenize the text); ``raw`` takes the prompt
        verbatim, with one placeholder per image.
        """
        if not raw and not self.text.info.chat_template and self.text.info.prompt_layout:
            if not processed:
                return np.asarray([self.text.encode(prompt, chat=False)], dtype=np.int64), prompt
            ids, text = self.text.layout_ids(prompt, [(p.prompt_text, p.prompt_ids) for p in processed])
            return np.asarray([ids], dtype=np.int64), text
        text = prompt if raw else self.text.render_chat(user_message(prompt, len(processed)))
        expanded = self.text.expand_images(text, [p.prompt_text for p in processed])
        ids = self.text.encode(expanded, chat=not raw)
        return np.asarray([ids], dtype=np.int64), expanded

    def encode_images(self, pixel_values: np.ndarray) -> np.ndarray:
        """pixel_values -> image_features, ``vision_batch`` tiles per call.

        Encoder-free families (Fuyu) export no vision graph: their preprocessor's patches are the features.
        """
        if VISION_ENCODER not in self.graphs:
            return pixel_values
        graph, step = self.graphs[VISION_ENCODER], self.vision_batch
        chunks = [
            graph.run({"pixel_values": pixel_values[i : i + step]})["image_features"]
            for i in range(0, len(pixel_values), step)
        ]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def project(self, image_features: np.ndarray) -> np.ndarray:
        """image_features -> image_embeds"""
        return self.graphs[PROJECTOR].run({"image_features": image_features})["image_embeds"]

    def embed(self, input_ids: np.ndarray) -> np.ndarray:
        """input_ids -> inputs_embeds"""
        return self.graphs[EMBED_TOKENS].run({"input_ids": input_ids})["inputs_embeds"]

    def merge(self, inputs_embeds: np.ndarray, input_ids: np.ndarray, image_embeds: np.ndarray | None) -> np.ndarray:
        """Put the image rows at the image-token positions, in order of appearance."""
        if image_embeds is None:
            return inputs_embeds
        mask = input_ids == self.manifest.image.token_id
        rows = image_embeds.reshape(-1, image_embeds.shape[-1])
        if int(mask.sum()) != rows.shape[0]:
            raise PromptError(
                f"{int(mask.sum())} image tokens in the prompt but the images gave {rows.shape[0]} embeddings",
                fix="do not write the image token yourself; use one placeholder per image",
            )
        merged = inputs_embeds.copy()
        merged[mask] = rows.astype(merged.dtype, copy=False)
        return merged

    def decoder_step(self, inputs_embeds: np.ndarray, cache: KVCache) -> np.ndarray:
        """inputs_embeds, attention_mask, position_ids, past -> logits (last position), present"""
        seq = inputs_embeds.shape[1]
        total = cache.length + seq
        graph = self.graphs[DECODER]
        feeds = {
            "inputs_embeds": inputs_embeds,
            "attention_mask": np.ones((inputs_embeds.shape[0], total), dtype=np.int64),
            "position_ids": np.arange(cache.length, total, dtype=np.int64)[None, :],
        }
        if graph.holds_kv_cache:  # the cache lives in the graph; a new request starts an empty one
            if cache.length == 0:
                graph.reset_kv_cache(inputs_embeds.shape[0])
                self._kv_owner = cache
            elif self._kv_owner is not cache:
                raise PromptError(
                    "this pipeline's decoder holds the KV cache of a newer request; it serves one at a time",
                    fix="finish one generation before starting the next, or load one pipeline per conversation",
                )
            outputs = graph.run(feeds)
            cache.length += seq
        else:
            outputs = graph.run({**feeds, **cache.arrays})
            cache.update(outputs, seq)
        return outputs["logits"][0, -1]

    # ---- requests --------------------------------------------------------------------------------
    def prepare(
        self, prompt: str, images: Sequence[ImageInput] = (), raw: bool = False, timings: Timings | None = None
    ) -> PreparedInputs:
        timings = timings or Timings()
        with timings.measure("preprocess"):
            processed = self.preprocess(images)
        with timings.measure("tokenize"):
            input_ids, text = self.tokenize(prompt, processed, raw=raw)
        pixel_values = np.concatenate([p.pixel_values for p in processed]) if processed else None
        images = [(p.key, len(p.pixel_values)) for p in processed]
        return PreparedInputs(input_ids=input_ids, pixel_values=pixel_values, prompt=text, images=images)

    def prefill_embeds(self, prepared: PreparedInputs, timings: Timings | None = None) -> np.ndarray:
        """Vision, projector, embedding and merge: the decoder's input for the whole prompt."""
        timings = timings or Timings()
        image_embeds = None
        if prepared.pixel_values is not None:
            image_embeds = self.image_embeds(prepared, timings)
        with timings.measure("embed"):
            embeds = self.embed(prepared.input_ids)
        with timings.measure("merge"):
            return self.merge(embeds, prepared.input_ids, image_embeds)

    def image_embeds(self, prepared: PreparedInputs, timings: Timings) -> np.ndarray:
        """Vision encoder and projector per image, or the cached result for an image seen before."""
        images = prepared.images or [("", len(prepared.pixel_values))]
        parts, start = [], 0
        for key, tiles in images:
            pixels = prepared.pixel_values[start : start + tiles]
            start += tiles
            cached = self._image_cache.get(key) if key else None
            if cached is not None:
                self._image_cache.move_to_end(key)
                timings.cached_images += 1
                parts.append(cached)
                continue
            with timings.measure("vision_encoder"):
                features = self.encode_images(pixels)
            with timings.measure("projector"):
                projected = self.project(features)
            if key and self.image_cache_size > 0:
                projected.flags.writeable = False  # shared with later requests
                self._image_cache[key] = projected
                while len(self._image_cache) > self.image_cache_size:
                    self._image_cache.popitem(last=False)
            parts.append(projected)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def generate_ids(
        self,
        prepared: PreparedInputs,
        max_new_tokens: int = 64,
        sampling: SamplingParams | None = None,
        min_new_tokens: int = 0,
        timings: Timings | None = None,
    ) -> Iterator[int]:
        """Yield new token ids one by one, stopping at an EOS id.

        As in transformers, EOS is suppressed until ``min_new_tokens`` tokens exist (benchmarks set it
        to ``max_new_tokens`` to force the length).
        """
        timings = timings or Timings()
        sampler = Sampler(sampling or SamplingParams())
        self._check_length(prepared.input_ids.shape[1], max_new_tokens)
        eos_ids = self.manifest.text.eos_token_ids
        eos = set(eos_ids)
        start = time.perf_counter()
        embeds = self.prefill_embeds(prepared, timings)
        cache = KVCache.empty(self.manifest)
        with timings.measure("prefill"):
            logits = self.decoder_step(embeds, cache)
        for step in range(max_new_tokens):
            with timings.measure("sample"):
                if step < min_new_tokens and eos_ids:
                    logits[eos_ids] = -np.inf
                token = sampler(logits)
            now = time.perf_counter()
            if step == 0:
                timings.stages["ttft"] = now - start
            if token in eos:
                return
            timings.token_times.append(now)
            yield token
            if step + 1 == max_new_tokens:
                return
            step_start = time.perf_counter()
            embeds = self.embed(np.asarray([[token]], dtype=np.int64))
            logits = self.decoder_step(embeds, cache)
            timings.decode_steps.append(time.perf_counter() - step_start)

    def stream(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        max_new_tokens: int = 64,
        raw: bool = False,
        stop: Sequence[str] = (),
        **sampling,
    ) -> Iterator[str]:
        """Yield text pieces as tokens are generated."""
        for piece in self._run(prompt, images, max_new_tokens, raw, stop, SamplingParams(**sampling), Timings()):
            if isinstance(piece, str):
                yield piece

    def generate(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        max_new_tokens: int = 64,
        raw: bool = False,
        stop: Sequence[str] = (),
        min_new_tokens: int = 0,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        """Generate a reply. Greedy by default; ``stop`` strings end generation and are cut from the text.

        ``on_text`` receives each text piece as soon as it is decoded (streaming with a full result).
        """
        sampling = SamplingParams(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        timings = Timings()
        result: GenerationResult | None = None
        for item in self._run(prompt, images, max_new_tokens, raw, stop, sampling, timings, min_new_tokens):
            if isinstance(item, GenerationResult):
                result = item
            elif on_text is not None:
                on_text(item)
        assert result is not None
        return result

    def _run(self, prompt, images, max_new_tokens, raw, stop, sampling, timings, min_new_tokens=0):
        """Shared by generate and stream: yields text pieces, then the final GenerationResult."""
        start = time.perf_counter()
        prepared = self.prepare(prompt, images, raw=raw, timings=timings)
        decoder = StreamDecoder(self.text)
        ids: list[int] = []
        text = ""
        finish = None
        ids_iter = self.generate_ids(prepared, max_new_tokens, sampling, min_new_tokens, timings)
        for token in ids_iter:
            ids.append(token)
            with timings.measure("detokenize"):
                piece = decoder.push(token)
            text, emitted, finish = _append(text, piece, stop)
            if emitted:
                yield emitted
            if finish:
                break
        if finish is None:
            text, emitted, finish = _append(text, decoder.flush(), stop)
            if emitted:
                yield emitted
            finish = finish or ("length" if len(ids) == max_new_tokens else "eos")
        ids_iter.close()
        timings.stages["total"] = time.perf_counter() - start
        yield GenerationResult(
            text=text,
            token_ids=ids,
            prompt_tokens=int(prepared.input_ids.shape[1]),
            finish_reason=finish,
            timings=timings.as_dict(),
        )

    def _check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        limit = self.manifest.decoder.max_positions
        if limit and prompt_tokens + max_new_tokens > limit:
            raise PromptError(
                f"prompt ({prompt_tokens} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                f"{limit} positions",
                fix="shorten the prompt, use fewer images or lower --max-new-tokens",
            )

    def describe(self) -> dict:
        return {"folder": str(self.folder), "family": self.manifest.family, **self.backend_info}


def _image_key(image) -> str:
    """A digest of the decoded pixels (mode and size included): equal pictures share an embedding."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}:{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _append(text: str, piece: str, stop: Sequence[str]) -> tuple[str, str, str | None]:
    """Add a decoded piece; cut at the first stop string. Returns (text, piece to emit, "stop" or None)."""
    combined = text + piece
    hits = [combined.find(s) for s in stop if s and s in combined]
    if not hits:
        return combined, piece, None
    cut = min(hits)
    return combined[:cut], combined[len(text) : cut] if cut > len(text) else "", "stop"
