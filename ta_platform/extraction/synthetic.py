"""Deterministic math-reasoning-like text, with the character span of every sentence.

Why: the tiny offline tokenizers are trained on it, and tests and the extraction benchmark need
traces of realistic shape (a plain-text prompt ending in ``<think>``, then 30-300 sentences) without
depending on the rollouts package or the network. Same seed, same text, on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PROMPT_TEMPLATE = (
    "Solve this math problem step by step. You need to put the final answer in \\boxed{{}}. "
    "Problem: {problem} Solution: \n<think>\n"
)

_SUBJECTS = ["the triangle", "the sequence", "the polynomial", "the remainder", "the sum", "the product",
             "the circle", "the integer", "the fraction", "the probability", "the area", "the slope"]
_OPENERS = ["Let me", "Okay, so I need to", "First, I should", "Now I will", "Wait, let me", "Hmm, maybe I can",
            "Alternatively, I could", "So I want to", "Next, I need to", "Let's"]
_VERBS = ["compute", "check", "simplify", "find", "rewrite", "factor", "expand", "verify", "estimate", "divide"]
_CONNECTORS = ["which gives", "so we get", "and that means", "so", "therefore", "which is"]
_DOUBTS = ["Wait, that doesn't seem right.", "Hmm, let me double-check that.", "Is that correct?",
           "Actually, I made a mistake.", "That seems too big.", "Let me verify this again."]


def _sentence(rng: random.Random) -> str:
    kind = rng.random()
    a, b = rng.randint(2, 999), rng.randint(2, 99)
    if kind < 0.15:
        return rng.choice(_DOUBTS)
    if kind < 0.55:
        op, value = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
        return f"{rng.choice(_OPENERS)} {rng.choice(_VERBS)} {a} {op} {b}, {rng.choice(_CONNECTORS)} {value}."
    if kind < 0.8:
        return (f"{rng.choice(_OPENERS)} {rng.choice(_VERBS)} {rng.choice(_SUBJECTS)} modulo {b}, "
                f"{rng.choice(_CONNECTORS)} {a % b}.")
    return f"So {rng.choice(_SUBJECTS)} is {a}/{b}, and since {b} divides {a * b}, the answer is {a}."


def _problem(rng: random.Random) -> str:
    a, b = rng.randint(10, 9999), rng.randint(3, 97)
    return f"What is the remainder when {a} times {rng.choice(_SUBJECTS)[4:]} number {b} is divided by {b + 3}?"


@dataclass(frozen=True)
class SyntheticTrace:
    """A prompt + thinking text (``full_cot``) and the character span of every thinking sentence."""

    key: str
    text: str
    char_spans: list[tuple[int, int]]
    prompt_end: int  # character index where the prompt ends (the thinking starts)


def synthetic_trace(seed: int, n_sentences: int, key: str | None = None) -> SyntheticTrace:
    """One deterministic trace: sentences joined by spaces, with a blank line every few sentences."""
    rng = random.Random(seed)
    prompt = PROMPT_TEMPLATE.format(problem=_problem(rng))
    parts = [prompt]
    spans: list[tuple[int, int]] = []
    cursor = len(prompt)
    for i in range(n_sentences):
        if i:
            gap = "\n\n" if rng.random() < 0.2 else " "
            parts.append(gap)
            cursor += len(gap)
        sentence = _sentence(rng)
        parts.append(sentence)
        spans.append((cursor, cursor + len(sentence)))
        cursor += len(sentence)
    parts.append("\n</think>\n\nThe answer is \\boxed{7}.")
    return SyntheticTrace(key or f"synthetic/problem_{seed}", "".join(parts), spans, len(prompt))


def synthetic_traces(n_traces: int, min_sentences: int, max_sentences: int, seed: int = 0) -> list[SyntheticTrace]:
    """``n_traces`` traces of varied length (uniform number of sentences in the given range)."""
    rng = random.Random(seed)
    return [synthetic_trace(seed * 100_003 + i, rng.randint(min_sentences, max_sentences), key=f"synthetic/problem_{i}")
            for i in range(n_traces)]


def training_corpus(n_lines: int = 4000, seed: int = 12345) -> list[str]:
    """Lines of synthetic reasoning text used to train the tiny tokenizers."""
    rng = random.Random(seed)
    lines = [PROMPT_TEMPLATE.format(problem=_problem(rng)) for _ in range(n_lines // 20)]
    lines += [" ".join(_sentence(rng) for _ in range(rng.randint(1, 4))) for _ in range(n_lines)]
    return lines
