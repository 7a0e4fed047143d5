"""The embedded default: deterministic chains in the ``all_annotated_chains.json`` format.

Why generated: the study must run on a fresh machine with no data, and a generator whose truth is
known is the test that the whole path (tags, alignment, offsets, lags, probes) finds what is there.

What is planted (``lead_up=True``, the default): the section just before every backtracking
section ends with a lead-up sentence (``LEAD_UPS``: words used nowhere else, 11-13 tokens, whole tokens even for the tiny
models' small BPE vocabulary), so the
activation at t carries "a backtrack is coming" for the tokens t a few positions before the onset:
a lag +4 / +8 probe can predict the onset ahead of it, which the persistence baseline (the label at
t, still 0 there) cannot. With ``lead_up=False`` (the control) the same lead-up sentences are placed
in random sections instead, so the vocabulary is there but predicts nothing.

Everything else is plain templates: sections of the six labels with numbers drawn from a seeded
``numpy`` generator; backtracking sections start with "Wait," or "But" like the real ones. The
annotated text is the chain with tags, with occasional whitespace differences (the aligner must be
whitespace-flexible, as on real data).
"""

from __future__ import annotations

import numpy as np

LEAD_UPS = (
    "Hmm, maybe I should double check, this seems too big.",
    "Hmm, this seems too big, maybe I should verify.",
    "Hmm, maybe this is too big, I should double check.",
)
TEMPLATES = {
    "initializing": ("Okay, so I need to find the sum of {a} and {b}.",
                     "Okay, the problem wants the product of {a} and {b}."),
    "deduction": ("So {a} and {b} gives {c}.", "That means the answer is {c} now.", "Therefore the sum is {c}."),
    "adding-knowledge": ("In fact the order of a sum does not change it.",
                         "The product of two integer values is an integer."),
    "example-testing": ("Let me compute {a} times {b} first.", "For example, with {b} the answer will be {c}."),
    "uncertainty-estimation": ("I am not sure about {c} yet.", "What if the answer is not {c}?"),
    "backtracking": ("Wait, that is not right, {a} and {b} gives {d}.",
                     "Actually, I made a mistake, the answer is {d}.",
                     "Wait, let me correct that, the sum is {d}, not {c}."),
}
PLAIN = ("initializing", "deduction", "adding-knowledge", "example-testing", "uncertainty-estimation")


def generate_chains(n_chains: int = 32, seed: int = 0, *, lead_up: bool = True,
                    sections: tuple[int, int] = (6, 9)) -> list[dict]:
    """``n_chains`` records ``{task_id, problem, reasoning_chain, annotated_chain}``, deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 2002])
    return [_chain(f"embedded_{i:03d}", rng, lead_up, sections) for i in range(n_chains)]


def _fill(template: str, rng: np.random.Generator) -> str:
    a, b = int(rng.integers(2, 60)), int(rng.integers(2, 60))
    return template.format(a=a, b=b, c=a + b, d=a + b + int(rng.integers(1, 9)))


def _chain(task_id: str, rng: np.random.Generator, lead_up: bool, sections: tuple[int, int]) -> dict:
    n = int(rng.integers(sections[0], sections[1] + 1))
    labels = ["initializing"]
    for _ in range(n - 1):
        # backtracking never follows backtracking, so every section has a lead-up slot before it
        labels.append("backtracking" if labels[-1] != "backtracking" and rng.random() < 0.2
                      else str(rng.choice(PLAIN[1:])))
    texts = []
    for label in labels:
        templates = TEMPLATES[label]
        texts.append(" ".join(_fill(templates[int(rng.integers(len(templates)))], rng)
                              for _ in range(1 if label == "backtracking" else int(rng.integers(1, 3)))))
    n_cues = sum(label == "backtracking" for label in labels)
    slots = ([i - 1 for i, label in enumerate(labels) if label == "backtracking"] if lead_up else
             [int(i) for i in rng.choice([i for i, label in enumerate(labels) if label != "backtracking"],
                                          size=min(n_cues, n - n_cues), replace=False)])
    for slot in slots:
        texts[slot] = f"{texts[slot]} {LEAD_UPS[int(rng.integers(len(LEAD_UPS)))]}"
    separators = [" " if rng.random() < 0.7 else "\n\n" for _ in labels]
    chain = "\n" + "".join(text + sep for text, sep in zip(texts, separators, strict=True)).rstrip() + "\n"
    annotated = "".join(f'["{label}"] {text}{"  " if rng.random() < 0.2 else " "}["end-section"]{sep}'
                        for label, text, sep in zip(labels, texts, separators, strict=True))
    # each chain is its own problem: the study splits (and its intervals resample) by problem statement
    return {"task_id": task_id, "problem": f"Add and multiply the given numbers ({task_id}).", "reasoning_chain": chain,
            "annotated_chain": annotated.rstrip()}
