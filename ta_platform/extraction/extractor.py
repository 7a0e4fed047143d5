"""Sentence embeddings from several layers of one model in ONE forward pass per batch.

Why each choice (numbers in docs/extraction.md):
- forward hooks on the requested decoder layers pool the hidden states as they are produced; the
  hook of the deepest one raises, so the layers above it, the final norm and the LM head never run
  (~2.7x cheaper than ``output_hidden_states=True`` on the whole model for a middle layer);
- we call the base model, never the LM head (no logits);
- sequences are sorted by length and grouped into token-budget batches with right padding and an
  attention mask (same activations as unpadded runs) only where batching pays;
- pooling is vectorised (see ``pooling.py``), under ``torch.inference_mode`` in eval mode;
- a trace longer than the model's context is never truncated: it is recorded as a failure
  (skip-and-record), like any other ``DataFault`` of one trace.

Layer ``L`` means the output of decoder block ``L`` (the residual stream), i.e. HF's
``hidden_states[L + 1]`` for every block but the last, where HF applies the final norm and we do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ta_platform.common.faults import DataFault, FaultRecord
from ta_platform.extraction.batching import default_token_budget, plan_batches
from ta_platform.extraction.pooling import POOLINGS, SegmentPlan, plan_segments, pool_segments
from ta_platform.extraction.spans import char_spans_to_token_spans, tokenize_with_offsets

Progress = Callable[[int, int], None]  # (traces done, traces total)


@dataclass(frozen=True)
class TraceInput:
    """One text and the character spans of its sentences (``chunk_ids`` default to 0..n-1).

    ``meta`` (e.g. ``model``, ``split``, ``problem_id``) is passed through to the row index.

    Token-level studies (backtracking, needle) set ``token_positions`` instead of ``char_spans``:
    one row per listed token (its own activation, ``chunk_idx`` = the token position in the
    tokenization of ``text`` with the same special-token setting, see ``tokenize_with_offsets``).
    Why positions, not character spans: byte-level BPE can give two tokens the same offsets, so
    a character span cannot always name one token.
    """

    key: str
    text: str
    char_spans: Sequence[tuple[int, int]] = ()
    chunk_ids: Sequence[int] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    token_positions: Sequence[int] | None = None

    def chunk_index(self) -> list[int]:
        if self.token_positions is not None:
            return [int(p) for p in self.token_positions]
        ids = list(range(len(self.char_spans))) if self.chunk_ids is None else [int(c) for c in self.chunk_ids]
        if len(ids) != len(self.char_spans):
            raise DataFault(self.key, f"{len(ids)} chunk ids for {len(self.char_spans)} spans", kind="invalid")
        return ids


@dataclass(frozen=True)
class PreparedTrace:
    """A tokenized trace: what the forward pass and the pooling need."""

    position: int  # index in the caller's trace list
    trace: TraceInput
    input_ids: np.ndarray
    token_spans: np.ndarray
    chunk_ids: list[int]


@dataclass(frozen=True)
class TraceEmbeddings:
    """The pooled sentence vectors of one trace, per layer (``float32 [n_sentences, hidden]``)."""

    position: int
    trace: TraceInput
    chunk_ids: list[int]
    n_tokens: int
    by_layer: dict[int, np.ndarray]


@dataclass
class ExtractionResult:
    """Per-layer matrices whose rows follow ``index`` (trace order, then sentence order)."""

    layers: list[int]
    embeddings: dict[int, np.ndarray]
    index: pd.DataFrame
    failures: list[FaultRecord]
    n_tokens: int


class _StopForward(Exception):
    """Raised by the hook of the deepest requested layer: nothing above it needs to run."""


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder blocks of a causal LM or of its base model (Qwen2, Llama, Mistral, Gemma...)."""
    base = getattr(model, "base_model", model)
    layers = getattr(base, "layers", None)
    if isinstance(layers, torch.nn.ModuleList):
        return layers
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise TypeError(f"cannot find the decoder layers of {type(model).__name__}")


def model_context_length(model: Any) -> int | None:
    """The longest sequence the model's positions support (``max_position_embeddings``)."""
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None)


def validate_layers(model: Any, layers: Sequence[int]) -> list[int]:
    """Sorted unique layer indices, each inside the model; ``ValueError`` names an unknown one."""
    n = len(decoder_layers(model))
    wanted = sorted({int(layer) for layer in layers})
    if not wanted:
        raise ValueError("no layers requested")
    bad = [layer for layer in wanted if not 0 <= layer < n]
    if bad:
        raise ValueError(f"unknown layer(s) {bad}: the model has {n} decoder layers (0..{n - 1})")
    return wanted


def prepare_traces(tokenizer: Any, traces: Sequence[TraceInput], *, max_length: int | None,
                   add_special_tokens: bool = True) -> tuple[list[PreparedTrace], list[FaultRecord]]:
    """Tokenize every trace and map its sentences to token spans; faulty traces become records.

    The too-long policy is explicit: a trace with more tokens than ``max_length`` is recorded as a
    ``too_long`` failure naming its length; it is never truncated (truncation would silently drop
    or shift sentences).
    """
    prepared: list[PreparedTrace] = []
    failures: list[FaultRecord] = []
    seen: set[str] = set()
    for position, trace in enumerate(traces):
        try:
            if trace.key in seen:
                raise DataFault(trace.key, "duplicate trace key", kind="duplicate")
            seen.add(trace.key)
            ids, offsets = tokenize_with_offsets(tokenizer, trace.text, add_special_tokens=add_special_tokens,
                                                 item=trace.key)
            if max_length is not None and len(ids) > max_length:
                raise DataFault(trace.key, f"{len(ids)} tokens exceed the model context of {max_length} "
                                           "(not truncated; trace skipped)", kind="too_long")
            if trace.token_positions is not None:
                spans = single_token_spans(trace.token_positions, len(ids), item=trace.key)
            else:
                spans = char_spans_to_token_spans(offsets, trace.char_spans, item=trace.key,
                                                  text_length=len(trace.text))
            prepared.append(PreparedTrace(position, trace, ids, spans, trace.chunk_index()))
        except DataFault as fault:
            failures.append(FaultRecord.from_fault("extract", trace.key, fault))
    return prepared, failures


def single_token_spans(positions: Sequence[int], n_tokens: int, *, item: str) -> np.ndarray:
    """Spans ``[p, p + 1)`` of the listed token positions; ``DataFault`` for none or one outside the text."""
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if pos.size == 0:
        raise DataFault(item, "no token positions requested", kind="empty")
    outside = pos[(pos < 0) | (pos >= n_tokens)]
    if outside.size:
        raise DataFault(item, f"token position {int(outside[0])} outside the {n_tokens} tokens of the text",
                        kind="misaligned_span")
    return np.stack([pos, pos + 1], axis=1)


class LayerCapture:
    """Forward hooks that pool the requested layers of the current batch, stopping after the deepest."""

    def __init__(self, model: Any, layers: Sequence[int], pooling: str):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r} (use one of {POOLINGS})")
        self.layers = list(layers)
        self.pooling = pooling
        self.plan: SegmentPlan | None = None
        self.pooled: dict[int, torch.Tensor] = {}
        blocks = decoder_layers(model)
        self._handles = [blocks[layer].register_forward_hook(self._hook_for(layer)) for layer in self.layers]

    def _hook_for(self, layer: int) -> Callable[..., None]:
        deepest = layer == max(self.layers)

        def hook(module: Any, args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            assert self.plan is not None
            self.pooled[layer] = pool_segments(hidden, self.plan, self.pooling)
            if deepest:
                raise _StopForward

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> LayerCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pad_batch(batch: Sequence[PreparedTrace], device: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Right-padded ``input_ids [B, T]`` and the attention mask (``None`` when nothing is padded,
    which keeps the causal fast path of SDPA)."""
    lengths = [len(p.input_ids) for p in batch]
    longest = max(lengths)
    ids = np.zeros((len(batch), longest), dtype=np.int64)
    for row, prepared in enumerate(batch):
        ids[row, : lengths[row]] = prepared.input_ids
    attention_mask = None
    if min(lengths) != longest:
        mask = np.arange(longest)[None, :] < np.asarray(lengths)[:, None]
        attention_mask = torch.from_numpy(mask.astype(np.int64)).to(device)
    return torch.from_numpy(ids).to(device), attention_mask


def _forward_batch(base: Any, batch: Sequence[PreparedTrace], capture: LayerCapture, device: Any) -> dict[int, np.ndarray]:
    """Run one right-padded batch; return ``{layer: float32 [sentences of the batch, hidden]}``."""
    input_ids, attention_mask = pad_batch(batch, device)
    capture.plan = plan_segments([p.token_spans for p in batch], input_ids.shape[1], device)
    capture.pooled = {}
    try:
        base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    missing = set(capture.layers) - set(capture.pooled)
    if missing:
        raise RuntimeError(f"layer hooks did not fire for {sorted(missing)}")
    return {layer: pooled.cpu().numpy() for layer, pooled in capture.pooled.items()}


def iter_batch_embeddings(model: Any, prepared: Sequence[PreparedTrace], batches: Sequence[Sequence[int]],
                          layers: Sequence[int], pooling: str = "mean") -> Iterator[list[TraceEmbeddings]]:
    """Yield the embeddings of each batch's traces as soon as its forward pass is done.

    ``batches`` index into ``prepared``. Why a generator: the resumable writer stores every finished
    trace before the next batch runs, so a killed run loses at most one batch.
    """
    layers = validate_layers(model, layers)
    model.eval()
    base = getattr(model, "base_model", model)
    device = next(model.parameters()).device
    with torch.inference_mode(), LayerCapture(model, layers, pooling) as capture:
        for batch_indices in batches:
            batch = [prepared[i] for i in batch_indices]
            pooled = _forward_batch(base, batch, capture, device)
            bounds = np.cumsum([0] + [len(p.token_spans) for p in batch])
            yield [
                TraceEmbeddings(p.position, p.trace, p.chunk_ids, len(p.input_ids),
                                {layer: pooled[layer][bounds[k]: bounds[k + 1]] for layer in layers})
                for k, p in enumerate(batch)
            ]


def span_text_sha1(trace: TraceInput) -> list[str]:
    """SHA-1 of the exact text of each row's span (``""`` for token-position rows).

    Stored in the index beside the keys: a reader can check that the sentence it means by
    ``(trace_key, chunk_idx)`` is the text this row was computed from, without trusting any join.
    """
    if trace.token_positions is not None:
        return [""] * len(trace.token_positions)
    return [hashlib.sha1(trace.text[int(a):int(b)].encode("utf-8")).hexdigest() for a, b in trace.char_spans]


def index_frame(traces: Sequence[TraceEmbeddings]) -> pd.DataFrame:
    """Row index (``trace_key, chunk_idx, text_sha1`` + each trace's ``meta``) in the order of ``traces``."""
    rows = [{"trace_key": t.trace.key, "chunk_idx": c, "text_sha1": h, **dict(t.trace.meta)}
            for t in traces for c, h in zip(t.chunk_ids, span_text_sha1(t.trace), strict=True)]
    frame = pd.DataFrame(rows, columns=None if rows else ["trace_key", "chunk_idx", "text_sha1"])
    frame["chunk_idx"] = frame["chunk_idx"].astype("int64")
    return frame


def stack_layers(traces: Sequence[TraceEmbeddings], layers: Sequence[int], hidden_size: int) -> dict[int, np.ndarray]:
    """Concatenate per-trace matrices (already in the wanted order) into one float32 matrix per layer."""
    return {
        layer: (np.concatenate([t.by_layer[layer] for t in traces], axis=0).astype(np.float32, copy=False)
                if traces else np.zeros((0, hidden_size), dtype=np.float32))
        for layer in layers
    }


def extract_sentence_embeddings(model: Any, tokenizer: Any, traces: Sequence[TraceInput], layers: Sequence[int],
                                pooling: str = "mean", token_budget: int | None = None,
                                progress: Progress | None = None, *, max_length: int | None = None,
                                add_special_tokens: bool = True) -> ExtractionResult:
    """Pooled sentence embeddings of ``layers`` (absolute indices), all from one forward pass per batch.

    Rows follow the input trace order, then sentence order; faulty traces (too long, unalignable
    sentence, duplicate key) are skipped and listed in ``failures``. ``token_budget`` = padded tokens
    per forward (``None``: the measured default for the model's device, 0: one trace per forward).
    ``max_length`` defaults to the model's context length. With ``pooling="last"`` and one span
    covering a whole prompt, the row is the activation at the prompt's last token.
    """
    layers = validate_layers(model, layers)
    device = next(model.parameters()).device
    budget = default_token_budget(device.type) if token_budget is None else token_budget
    limit = model_context_length(model) if max_length is None else max_length
    prepared, failures = prepare_traces(tokenizer, traces, max_length=limit, add_special_tokens=add_special_tokens)
    batches = plan_batches([len(p.input_ids) for p in prepared], budget)
    done: list[TraceEmbeddings] = []
    for finished in iter_batch_embeddings(model, prepared, batches, layers, pooling):
        done.extend(finished)
        if progress is not None:
            progress(len(done), len(prepared))
    done.sort(key=lambda t: t.position)
    hidden_size = int(model.config.hidden_size)
    return ExtractionResult(layers, stack_layers(done, layers, hidden_size), index_frame(done), failures,
                            sum(t.n_tokens for t in done))
