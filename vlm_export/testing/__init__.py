"""Builders of tiny, random-weight checkpoints for tests, demos and benchmarks (needs the export extra).

They make real Hugging Face checkpoint folders (config, safetensors, tokenizer, processor, chat
template) from config objects alone, so nothing is downloaded and `convert` runs its real loading code.
"""
