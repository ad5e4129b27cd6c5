"""A byte-level tokenizer made with the `tokenizers` library: one token per byte plus special tokens.

Random-weight models do not care what their tokens mean; a byte vocabulary keeps the checkpoint small
while exercising the real paths (byte-level pre-tokenizer and decoder, added special tokens, a BOS
post-processor) that real BPE tokenizers use.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from tokenizers.pre_tokenizers import ByteLevel


def byte_level_tokenizer(special_tokens: list[str], bos_token: str | None = None) -> Tokenizer:
    """Special tokens take ids 0..k-1 in the given order; the 256 byte symbols follow."""
    alphabet = ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(special_tokens)}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(special_tokens)
    if bos_token is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A {bos_token} $B",
            special_tokens=[(bos_token, vocab[bos_token])],
        )
    return tokenizer


def hf_fast_tokenizer(tokenizer: Tokenizer, **special: str):
    """Wrap for transformers, without token_type_ids (they make `generate` fail on decoders)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        **special,
    )
