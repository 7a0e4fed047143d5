"""Small causal LMs that run offline, built deterministically, loaded through the real HF path.

Why: the platform must run end to end with no network and no GPU, yet exercise exactly the code the
paper's models go through (``save_pretrained`` -> ``from_pretrained``, a fast tokenizer with
offsets, the Qwen2 and Llama architectures). The tokenizer is a byte-level BPE trained with the
``tokenizers`` library on built-in synthetic reasoning text; the weights are random with a fixed
seed. Same version + seed -> byte-identical files.

Also holds the model shapes of the extraction benchmark (``tiny`` for CPU; ``8b``/``14b`` = the
real DeepSeek-R1-Distill Llama-8B / Qwen-14B shapes with random weights, for GPU runs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ta_platform.extraction.synthetic import training_corpus

TINY_VERSION = "tiny-v1"
TOKENIZER_VOCAB = 4096

# Special tokens per architecture family: Llama (R1-distill-Llama) adds a BOS; Qwen2 adds nothing.
_SPECIALS = {
    "qwen2": {"bos": None, "eos": "<|endoftext|>", "pad": "<|endoftext|>"},
    "llama": {"bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>", "pad": "<｜end▁of▁sentence｜>"},
}

# name -> hidden, intermediate, layers, heads, kv heads, vocab (None = the tokenizer's), max positions
SHAPES: dict[str, dict[str, Any]] = {
    # The registry's embedded models: extraction of ~50 traces x 3k tokens in seconds on 2 CPU cores.
    "embedded": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=8, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=None, max_position_embeddings=8192),
    # Benchmark on CPU: big enough that matrix multiplies dominate Python and pooling overhead, with the
    # proportions of R1-Distill-Qwen-14B (LM head ~8% of the whole forward; the middle layer ~half the depth).
    "tiny": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=24, num_attention_heads=6,
                 num_key_value_heads=2, vocab_size=8192, max_position_embeddings=8192),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0),
    "14b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=48, num_attention_heads=40,
                num_key_value_heads=8, vocab_size=152064, max_position_embeddings=131072, rope_theta=1000000.0),
}


def build_tokenizer(arch: str) -> Any:
    """A ``PreTrainedTokenizerFast`` (byte-level BPE) trained on the synthetic corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = _SPECIALS[arch]
    special_tokens = [t for t in dict.fromkeys(specials.values()) if t]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(training_corpus(), trainer=trainer)
    byte_level = processors.ByteLevel(trim_offsets=False)
    if specials["bos"]:
        bos_id = backend.token_to_id(specials["bos"])
        template = processors.TemplateProcessing(single=f"{specials['bos']} $A", pair=f"{specials['bos']} $A $B",
                                                 special_tokens=[(specials["bos"], bos_id)])
        backend.post_processor = processors.Sequence([byte_level, template])
    else:
        backend.post_processor = byte_level
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=specials["bos"], eos_token=specials["eos"],
                                   pad_token=specials["pad"], model_max_length=SHAPES["embedded"]["max_position_embeddings"])


def model_config(arch: str, shape: str = "embedded", tokenizer: Any | None = None) -> Any:
    """A ``Qwen2Config``/``LlamaConfig`` of the given shape (special-token ids from ``tokenizer``)."""
    from transformers import LlamaConfig, Qwen2Config

    dims = dict(SHAPES[shape])
    vocab_size = dims.pop("vocab_size") or (len(tokenizer) if tokenizer is not None else TOKENIZER_VOCAB)
    ids: dict[str, Any] = {}
    if tokenizer is not None:
        ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    common = dict(vocab_size=vocab_size, rms_norm_eps=1e-6, tie_word_embeddings=shape == "embedded", **ids, **dims)
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "llama":
        return LlamaConfig(**common)
    raise ValueError(f"unknown tiny architecture {arch!r} (use qwen2 or llama)")


def random_causal_lm(config: Any, seed: int = 0, dtype: Any = None, device: str = "cpu") -> Any:
    """A causal LM with seeded random weights (``eval`` mode), built directly on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    return model.eval()


def build_tiny_model(arch: str, folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write tokenizer + config + safetensors weights of the embedded ``arch`` model to ``folder``."""
    folder = Path(folder)
    tokenizer = build_tokenizer(arch)
    model = random_causal_lm(model_config(arch, "embedded", tokenizer), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def ensure_tiny_model(arch: str, cache_dir: str | os.PathLike[str]) -> Path:
    """The folder of the built ``arch`` model under ``cache_dir``, building it once (atomically) if absent.

    Why atomic: two processes (or a run killed mid-build) must never leave a half-written model
    that a later ``from_pretrained`` would load.
    """
    target = Path(cache_dir) / f"{arch}-{TINY_VERSION}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build_tiny_model(arch, staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process won the race; its copy is identical
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
