"""Judges answer "which of these two tasks would you rather do?" with P(first task chosen).

Two implementations share one protocol so active learning never cares which it talks to:
``HFLogitJudge`` reads a Hugging Face causal LM's next-token logits for the two option labels and
averages both presentation orders (cancelling position bias); ``SimulatedJudge`` samples from a
Thurstonian model with hidden utilities (tests, benchmarks, the embedded default). torch is imported
lazily so the simulated path never pays for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy.special import ndtr

QUESTION = "Which of these two tasks would you rather do?"


@dataclass(frozen=True)
class Task:
    """What a judge sees of a task: its id (simulated judges) and its prompt (model judges)."""

    task_id: str
    prompt: str


@runtime_checkable
class PairwiseJudge(Protocol):
    """P(first task of each pair chosen); pairs are (first, second) in presentation order."""

    def prefer_first(self, pairs: Sequence[tuple[Task, Task]]) -> np.ndarray: ...


@runtime_checkable
class SamplingJudge(PairwiseJudge, Protocol):
    """A judge that draws its own choices (one bool per pair: True = first chosen)."""

    def sample_first_chosen(self, pairs: Sequence[tuple[Task, Task]]) -> np.ndarray: ...


def tasks_from_pool(pool: pd.DataFrame) -> dict[str, Task]:
    """``task_id -> Task`` from a task-pool frame (``task_id, prompt``)."""
    return {str(t): Task(str(t), str(p)) for t, p in zip(pool["task_id"], pool["prompt"], strict=True)}


# --------------------------------------------------------------------------- HF logit judge


@dataclass
class JudgeModel:
    """A causal LM loaded for judging, with the device and dtype it runs at."""

    spec: Any
    model: Any
    tokenizer: Any
    device: str
    dtype_name: str


def load_judge_model(spec: Any, device: str = "auto", dtype: str | None = None, cache_dir: Any = None) -> JudgeModel:
    """A registry model WITH its LM head (a judge reads next-token logits), on ``device`` at the
    registry's dtype (or ``dtype``), at the registry's revision for Hub models, in eval mode.

    Why not a bare ``from_pretrained``: the judge must obey the same device, dtype (bf16 on GPU, never
    float16), pinned revision and weights location (tiny builds, GGUF conversions, the HF cache under
    TA_STORAGE) as extraction; ``extraction.loading.load_causal_lm`` applies those rules.
    """
    from ta_platform.extraction.device import select_device, select_dtype_name
    from ta_platform.extraction.loading import load_causal_lm

    device = select_device(device)
    dtype_name = select_dtype_name(device, dtype or spec.dtype)
    model, tokenizer = load_causal_lm(spec, device=device, dtype=dtype_name, cache_dir=cache_dir)
    return JudgeModel(spec, model, tokenizer, device, dtype_name)


def build_comparison_prompt(first: str, second: str, tokenizer: Any = None, system_prompt: str | None = None,
                            labels: tuple[str, str] = ("A", "B")) -> str:
    """The exact text shown to the model: both tasks labelled, ending where the label is answered.

    With a tokenizer that has a chat template, the question becomes the user turn (plus the system
    prompt) and the generation prompt is appended; otherwise a plain text prompt ending in
    "Answer:" is used, with the system prompt as a leading paragraph.
    """
    # The instruction comes BEFORE the tasks, so every prompt of a call shares it (and the system
    # prompt) as one token prefix the logit judge runs once; only the two tasks differ.
    question = (f"{QUESTION} Reply with the letter {labels[0]} or {labels[1]} only.\n\n"
                f"Task {labels[0]}:\n{first}\n\nTask {labels[1]}:\n{second}")
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prefix = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{prefix}{question}\nAnswer:"


class PromptTooLongError(ValueError):
    """A judge prompt longer than the model's context (never truncated: the answer would be read at the wrong place)."""


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by every sequence (0 for none or an empty list)."""
    if not sequences:
        return 0
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for s in sequences[1:]:
        k = 0
        while k < length and s[k] == first[k]:
            k += 1
        length = k
        if length == 0:
            break
    return length


class HFLogitJudge:
    """A Hugging Face causal LM as a judge, read from the logits of the two option tokens.

    For every pair both orders are asked; P(first chosen) = mean(P(label A | first shown as A),
    P(label B | first shown as B)), each a softmax over just the two option logits. A model that
    always says "A" therefore yields 0.5, not a spurious preference.

    Why it is fast (``ta-platform bench judge`` measures it against generate-and-parse):
    every prompt of a call shares a token prefix (system prompt, question, "Task A:"); it is run
    ONCE and its key/value cache is reused by every batch, so each comparison only pays for its
    own suffix. Prompts showing the same task first (a task compared with several others, as
    active learning and the OOD comparisons ask) share a second-level prefix, run once per task. Suffixes are sorted by length and right-padded in batches; the decoder stack runs
    without the LM head, and only the two option rows of the output embedding are multiplied with
    the hidden state at each row's last real position (2 logits per prompt, not a vocabulary).
    Nothing is generated. ``share_prefix=False`` runs full prompts (the exactness reference).
    """

    def __init__(self, model: Any, tokenizer: Any, system_prompt: str | None = None, *, batch_size: int = 32,
                 labels: tuple[str, str] = ("A", "B"), option_tokens: tuple[str, str] | None = None,
                 share_prefix: bool = True, max_length: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.batch_size = batch_size
        self.labels = labels
        self.share_prefix = share_prefix
        self._memo: dict[str, float] = {}  # prompt -> P(label A): the model is deterministic in eval mode
        config = getattr(model, "config", None)
        self.max_length = max_length or getattr(config, "max_position_embeddings", None)
        chat = bool(getattr(tokenizer, "chat_template", None))
        # After "Answer:" the label follows a space; after a chat generation prompt it does not.
        tokens = option_tokens or (labels if chat else (f" {labels[0]}", f" {labels[1]}"))
        self.option_ids = tuple(self._single_token_id(t) for t in tokens)
        if self.option_ids[0] == self.option_ids[1]:
            raise ValueError(f"option tokens {tokens} map to the same token id")

    def with_system_prompt(self, system_prompt: str | None) -> HFLogitJudge:
        """The same model and settings under another system prompt (no reload)."""
        judge = HFLogitJudge.__new__(HFLogitJudge)
        judge.__dict__.update(self.__dict__)
        judge.system_prompt = system_prompt
        judge._memo = self._memo  # keys are whole prompts, system prompt included
        return judge

    def _single_token_id(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise ValueError(f"option token {text!r} encodes to nothing")
        return int(ids[-1] if len(ids) > 1 and ids[0] == self._space_id() else ids[0])

    def _space_id(self) -> int | None:
        ids = self.tokenizer.encode(" ", add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    def prompt_for(self, first: str, second: str) -> str:
        return build_comparison_prompt(first, second, self.tokenizer, self.system_prompt, self.labels)

    def encode(self, prompt: str) -> list[int]:
        """Token ids of the exact prompt (no second BOS when a chat template already added one)."""
        return list(self.tokenizer.encode(prompt, add_special_tokens=not self._has_bos(prompt)))

    def check_context(self, encoded: Sequence[Sequence[int]], prompts: Sequence[str]) -> None:
        """``PromptTooLongError`` naming the first prompt that does not fit the model's context."""
        if not self.max_length:
            return
        for ids, prompt in zip(encoded, prompts, strict=True):
            if len(ids) > self.max_length:
                shown = prompt if len(prompt) <= 120 else prompt[:117] + "..."
                raise PromptTooLongError(f"judge prompt of {len(ids)} tokens exceeds the model's context of "
                                         f"{self.max_length} tokens (system prompt {self.system_prompt!r}): {shown!r}")

    def option_probabilities(self, prompts: Sequence[str], groups: Sequence[Any] | None = None) -> np.ndarray:
        """P(label A) for each prompt: softmax over the two option-token logits at the next position.

        ``groups`` (optional, one label per prompt, e.g. the task shown first) marks prompts that
        share more than the common prefix: each group's own longest token prefix is run once on top
        of the common one, and its members only pay for what follows.
        """
        import torch  # lazy: model judges only

        if not prompts:
            return np.empty(0)
        # A prompt asked before (held-out pairs re-read for self-consistency) is not recomputed.
        known = [self._memo.get(p) for p in prompts]
        if all(k is not None for k in known):
            return np.array(known, dtype=float)
        if any(k is not None for k in known):
            todo = [i for i, k in enumerate(known) if k is None]
            fresh = self.option_probabilities([prompts[i] for i in todo],
                                              None if groups is None else [groups[i] for i in todo])
            for i, value in zip(todo, fresh, strict=True):
                known[i] = value
            return np.array(known, dtype=float)
        # Repeated samples of a pair ask the same prompt: compute each distinct prompt once.
        unique, first_index, inverse = np.unique(np.asarray(prompts, dtype=object).astype(str), return_index=True,
                                                 return_inverse=True)
        if len(unique) < len(prompts):
            labels = None if groups is None else [groups[i] for i in first_index]
            return self.option_probabilities(list(unique), labels)[inverse]
        encoded = [self.encode(p) for p in prompts]
        self.check_context(encoded, prompts)
        out = np.empty(len(prompts))
        # The shared prefix: at least one token of every prompt must stay in its suffix.
        prefix = common_prefix_length(encoded) if self.share_prefix else 0
        prefix = min(prefix, min(len(e) for e in encoded) - 1)
        members: dict[Any, list[int]] = {}
        for i, label in enumerate(groups if (groups is not None and self.share_prefix) else range(len(prompts))):
            members.setdefault(label, []).append(i)
        shared, singles = [], []
        for rows in members.values():
            length = min(common_prefix_length([encoded[r] for r in rows]), min(len(encoded[r]) for r in rows) - 1)
            if len(rows) >= 2 and length - prefix >= 4:
                shared.append((rows, length))
            else:
                singles += rows
        device = next(self.model.parameters()).device
        decoder = self.model.get_decoder()
        head = self.model.get_output_embeddings()
        option_weight = head.weight[list(self.option_ids)]  # (2, hidden): the only logits we read
        option_bias = head.bias[list(self.option_ids)] if getattr(head, "bias", None) is not None else None
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                prefix_kv = None
                if prefix > 0:
                    ids = torch.tensor([encoded[0][:prefix]], dtype=torch.long, device=device)
                    prefix_kv = decoder(input_ids=ids, use_cache=True).cache
                self._run_rows(decoder, encoded, singles, prefix, prefix_kv, option_weight, option_bias, out)
                for rows, length in shared:
                    ids = torch.tensor([encoded[rows[0]][prefix:length]], dtype=torch.long, device=device)
                    kwargs = {} if prefix_kv is None else {"cache": _expand_cache(prefix_kv, 1, self.model.config)}
                    if prefix_kv is not None:
                        kwargs["attention_mask"] = torch.ones((1, length), dtype=torch.long, device=device)
                    group_kv = decoder(input_ids=ids, use_cache=True, **kwargs).cache
                    self._run_rows(decoder, encoded, rows, length, group_kv, option_weight, option_bias, out)
        finally:
            self.model.train(was_training)
        self._memo.update(zip(prompts, out.tolist(), strict=True))
        return out

    def _run_rows(self, decoder: Any, encoded: Sequence[Sequence[int]], rows: Sequence[int], prefix: int,
                  prefix_kv: Any, option_weight: Any, option_bias: Any, out: np.ndarray) -> None:
        """Suffixes of ``rows`` (after ``prefix`` cached tokens) in length-sorted, right-padded batches."""
        import torch

        if not rows:
            return
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        device = option_weight.device
        order = sorted(rows, key=lambda r: len(encoded[r]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(encoded[r]) - prefix for r in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), prefix + width), dtype=torch.long)
            mask[:, :prefix] = 1
            for k, r in enumerate(batch):
                suffix = encoded[r][prefix:]
                ids[k, : len(suffix)] = torch.tensor(suffix)
                mask[k, prefix: prefix + len(suffix)] = 1
            kwargs = {}
            if prefix_kv is not None:
                kwargs["cache"] = _expand_cache(prefix_kv, len(batch), self.model.config)
            hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=prefix_kv is not None,
                             **kwargs).last_hidden_state
            last = (mask[:, prefix:].sum(dim=1) - 1).to(device)
            picked = hidden[torch.arange(len(batch), device=device), last]
            logits = picked @ option_weight.T
            if option_bias is not None:
                logits = logits + option_bias
            out[batch] = torch.softmax(logits.float(), dim=-1)[:, 0].cpu().numpy()

    def _has_bos(self, prompt: str) -> bool:
        bos = getattr(self.tokenizer, "bos_token", None)
        return bool(bos) and prompt.startswith(bos)  # chat templates already add BOS

    def order_probabilities(self, pairs: Sequence[tuple[Task, Task]]) -> tuple[np.ndarray, np.ndarray]:
        """(P(first chosen | shown first), P(first chosen | shown second)) per pair, one batched call."""
        if not pairs:
            return np.empty(0), np.empty(0)
        forward = [self.prompt_for(a.prompt, b.prompt) for a, b in pairs]
        backward = [self.prompt_for(b.prompt, a.prompt) for a, b in pairs]
        shown_first = [a.prompt for a, _ in pairs] + [b.prompt for _, b in pairs]  # prompts sharing a first task
        p_label_a = self.option_probabilities(forward + backward, shown_first)
        n = len(pairs)
        return p_label_a[:n], 1.0 - p_label_a[n:]

    def prefer_first(self, pairs: Sequence[tuple[Task, Task]]) -> np.ndarray:
        """Order-averaged P(first task chosen), asking (first, second) and (second, first)."""
        shown_first, shown_second = self.order_probabilities(pairs)
        return 0.5 * (shown_first + shown_second)


def _expand_cache(cache: Any, batch: int, config: Any) -> Any:
    """A fresh cache holding the prefix's keys/values repeated for ``batch`` rows (the forward appends to it)."""
    from transformers import DynamicCache

    layers = [(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1)) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=layers, config=config)


class GenerateParseJudge:
    """The common recipe, kept as the benchmark's naive reference: for each order, ``generate()`` up
    to 8 new tokens greedily, one prompt at a time, and parse the first standalone option letter.

    P(first chosen) per order is 1, 0, or 0.5 when no letter is found; orders are averaged.
    """

    def __init__(self, model: Any, tokenizer: Any, system_prompt: str | None = None, *, max_new_tokens: int = 8,
                 labels: tuple[str, str] = ("A", "B")):
        self.model = model
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.labels = labels
        self._pattern = re.compile(rf"\b({re.escape(labels[0])}|{re.escape(labels[1])})\b")

    def answer(self, prompt: str) -> str | None:
        """The option letter the model writes first in its greedy continuation (None if none)."""
        import torch

        bos = getattr(self.tokenizer, "bos_token", None)
        ids = self.tokenizer.encode(prompt, add_special_tokens=not (bos and prompt.startswith(bos)),
                                    return_tensors="pt")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            generated = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                            do_sample=False, pad_token_id=pad)
        text = self.tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)
        match = self._pattern.search(text)
        return match.group(1) if match else None

    def order_choices(self, pairs: Sequence[tuple[Task, Task]]) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: P(first chosen) from the answer with the first task shown first, and shown second."""
        def score(letter: str | None, first_label: str) -> float:
            return 0.5 if letter is None else float(letter == first_label)

        shown_first = [score(self.answer(build_comparison_prompt(a.prompt, b.prompt, self.tokenizer,
                                                                 self.system_prompt, self.labels)), self.labels[0])
                       for a, b in pairs]
        shown_second = [score(self.answer(build_comparison_prompt(b.prompt, a.prompt, self.tokenizer,
                                                                  self.system_prompt, self.labels)), self.labels[1])
                        for a, b in pairs]
        return np.array(shown_first), np.array(shown_second)

    def prefer_first(self, pairs: Sequence[tuple[Task, Task]]) -> np.ndarray:
        shown_first, shown_second = self.order_choices(pairs)
        return 0.5 * (shown_first + shown_second)


class GreedyJudge:
    """Temperature-0 choices of another judge: the option with the larger order-averaged probability.

    Why: a small model's order-averaged probabilities sit close to 0.5 (its position bias is large
    and cancels), so sampled choices are mostly noise; its greedy choice is the consistent residual
    preference. ``prefer_first`` is therefore 0, 1 (or 0.5 on an exact tie), and the accuracy
    ceiling of its outcomes is 1.
    """

    def __init__(self, judge: PairwiseJudge):
        self.judge = judge

    def with_system_prompt(self, system_prompt: str | None) -> GreedyJudge:
        return GreedyJudge(self.judge.with_system_prompt(system_prompt))

    def prefer_first(self, pairs: Sequence[tuple[Task, Task]]) -> np.ndarray:
        p = np.asarray(self.judge.prefer_first(pairs), dtype=float)
        return np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))

    def sample_first_chosen(self, pairs: Sequence[tuple[Task, Task]]) -> np.ndarray:
        return self.prefer_first(pairs) > 0.5


# --------------------------------------------------------------------------- simulated judge


UtilityShift = Callable[[str, Task], float]


class SimulatedJudge:
    """Thurstonian judge: utility of task t is a draw from N(mu_t + shift, sigma_t^2); higher wins.

    ``utility_shift(system_prompt, task)`` models an induced preference (e.g. "you hate math"
    lowers mu of math tasks) so system-prompt experiments can be simulated with a known answer.
    """

    def __init__(self, true_mu: Mapping[str, float] | pd.Series, noise_sigma: Mapping[str, float] | pd.Series | float,
                 seed: int = 0, *, system_prompt: str | None = None, utility_shift: UtilityShift | None = None):
        self.true_mu = pd.Series(true_mu, dtype=float)
        self.true_mu.index = self.true_mu.index.astype(str)
        if np.isscalar(noise_sigma):
            self.noise_sigma = pd.Series(float(noise_sigma), index=self.true_mu.index)
        else:
            self.noise_sigma = pd.Series(noise_sigma, dtype=float)
            self.noise_sigma.index = self.noise_sigma.index.astype(str)
        self.system_prompt = system_prompt
        self.utility_shift = utility_shift
        self._rng = np.random.default_rng(seed)

    def with_system_prompt(self, system_prompt: str | None) -> SimulatedJudge:
        """Same hidden utilities (and a fresh stream of the same seed) under another system prompt."""
        judge = SimulatedJudge(self.true_mu, self.noise_sigma, 0, system_prompt=system_prompt,
                               utility_shift=self.utility_shift)
        judge._rng = np.random.default_rng(self._rng.integers(2**63))
        return judge

    def _mu_sigma(self, tasks: Sequence[Task]) -> tuple[np.ndarray, np.ndarray]:
        ids = [t.task_id for t in tasks]
        missing = [i for i in ids if i not in self.true_mu.index]
        if missing:
            raise KeyError(f"simulated judge has no utility for task(s) {missing[:5]}")
        mu = self.true_mu.loc[ids].to_numpy(copy=True)
        if self.system_prompt is not None and self.utility_shift is not None:
            mu += np.array([self.utility_shift(self.system_prompt, t) for t in tasks])
        return mu, self.noise_sigma.loc[ids].to_numpy()

    def prefer_first(self, pairs: Sequence[tuple[Task, Task]]) -> np.ndarray:
        mu_a, s_a = self._mu_sigma([a for a, _ in pairs])
        mu_b, s_b = self._mu_sigma([b for _, b in pairs])
        return ndtr((mu_a - mu_b) / np.sqrt(s_a**2 + s_b**2))

    def sample_first_chosen(self, pairs: Sequence[tuple[Task, Task]]) -> np.ndarray:
        mu_a, s_a = self._mu_sigma([a for a, _ in pairs])
        mu_b, s_b = self._mu_sigma([b for _, b in pairs])
        draws_a = self._rng.normal(mu_a, s_a)
        draws_b = self._rng.normal(mu_b, s_b)
        return draws_a > draws_b


# --------------------------------------------------------------------------- planted utilities


@dataclass(frozen=True)
class PlantedUtilities:
    """Hidden utilities planted for the embedded default, with every component kept for audits."""

    mu: np.ndarray
    sigma: np.ndarray
    readout: np.ndarray  # activation readout part (unit variance x readout_scale)
    topic_part: np.ndarray
    noise: np.ndarray
    direction: np.ndarray  # unit vector in standardised-activation space
    topic_effects: dict[str, float]

    def as_frame(self, task_ids: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame({"task_id": list(task_ids), "mu": self.mu, "sigma": self.sigma,
                             "readout": self.readout, "topic_part": self.topic_part, "noise": self.noise})


def planted_utilities(activations: np.ndarray, topics: Sequence[str], seed: int = 0, *,
                      readout_scale: float = 1.0, topic_scale: float = 0.5, noise_scale: float = 0.3,
                      sigma_range: tuple[float, float] = (0.3, 0.7)) -> PlantedUtilities:
    """mu = readout_scale * z(X_std @ w) + topic_effect[topic] + N(0, noise_scale^2).

    X_std is the activations standardised per column (constant columns left at 0); w is a seeded
    random unit direction; z() standardises the readout to unit variance. Topic effects are seeded
    N(0, topic_scale^2) per topic. Why: a probe on the judge's own activations can recover the
    readout AND the topic part, while a content baseline (text embeddings) sees the topic part
    and only whatever of the readout happens to be predictable from text. Per-task Thurstonian noise
    sigma ~ U(sigma_range). Documented in docs/preferences.md.
    """
    x = np.asarray(activations, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(topics):
        raise ValueError(f"activations must be (n_tasks, d) matching {len(topics)} topics, got {x.shape}")
    rng = np.random.default_rng(seed)
    std = x.std(axis=0)
    x_std = np.divide(x - x.mean(axis=0), std, out=np.zeros_like(x), where=std > 0)
    direction = rng.normal(size=x.shape[1])
    direction /= np.linalg.norm(direction)
    raw = x_std @ direction
    readout = readout_scale * (raw - raw.mean()) / (raw.std() or 1.0)
    names = sorted(set(map(str, topics)))
    effects = dict(zip(names, rng.normal(0.0, topic_scale, len(names)).tolist(), strict=True))
    topic_part = np.array([effects[str(t)] for t in topics])
    noise = rng.normal(0.0, noise_scale, len(topics))
    sigma = rng.uniform(*sigma_range, len(topics))
    return PlantedUtilities(mu=readout + topic_part + noise, sigma=sigma, readout=readout, topic_part=topic_part,
                            noise=noise, direction=direction, topic_effects=effects)
