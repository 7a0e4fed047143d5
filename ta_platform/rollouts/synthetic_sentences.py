"""Sentence templates and the think text of one synthetic trace.

Why templates: the planted signal must live in the WORDS of a sentence (so a model reading the text
can find it) and the chunks must be exactly what the real split rule produces. Every template is one
sentence with no internal sentence break; some chunks get a short lead piece ("Hmm.") that the
split rule's merge step joins to the sentence, as in the real data.

Cue families (the content signal, documented in docs/embedded_data.md): each belongs to one function
tag, but that tag also has plain templates, so the tag alone does not reveal the cue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ta_platform.rollouts.synthetic_problems import SyntheticProblem

# family -> (function tag, templates). The cue words of each family appear in no plain template.
CUE_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "pivot": (
        "plan_generation",
        (
            "Instead of doing it step by step, I could {alt_plan}.",
            "Alternatively, I could {alt_plan}.",
            "Actually, a better approach is to {alt_plan}.",
            "Maybe there is a smarter way: instead, I could {alt_plan}.",
        ),
    ),
    "backtrack": (
        "uncertainty_management",
        (
            "Wait, that does not look right.",
            "Wait, I think I made a mistake with the {thing}.",
            "Hold on, that contradicts what I found earlier.",
            "No, wait, I mixed up the {thing}.",
        ),
    ),
    "verify": (
        "self_checking",
        (
            "Let me double-check that by recomputing {a} times {b}.",
            "To verify, I will plug the value back into the original expression.",
            "Let me verify this another way, just to be sure.",
            "I should double-check the {thing} before moving on.",
        ),
    ),
    "key_result": (
        "result_consolidation",
        (
            "This is the crucial step, since everything else depends on {value}.",
            "So the whole problem reduces to computing {value}.",
            "That means the crucial quantity is {value}, which determines everything.",
            "So the problem essentially reduces to the value {value}.",
        ),
    ),
}
CUE_WORDS: dict[str, tuple[str, ...]] = {
    "pivot": ("instead", "alternatively", "actually", "better", "smarter"),
    "backtrack": ("wait", "mistake", "contradicts", "mixed"),
    "verify": ("double", "verify", "plug", "sure"),
    "key_result": ("crucial", "reduces", "essentially", "determines"),
}
CUE_FAMILY_BY_TAG: dict[str, str] = {tag: family for family, (tag, _) in CUE_TEMPLATES.items()}

PLAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "problem_setup": (
        "Okay, so I need to solve this {topic} problem.",
        "Alright, I have a problem about a {topic} here.",
        "Let me read it again to make sure I understand what is being asked.",
        "The question wants {goal}.",
    ),
    "plan_generation": (
        "Let me think about how to approach this.",
        "First, I will {plan}.",
        "I think I should {plan}.",
        "Maybe I can start by trying to {plan}.",
        "My plan is to {plan} and then simplify.",
        "Then I will {plan}.",
    ),
    "fact_retrieval": (
        "I remember that {fact}.",
        "Recall that {fact}.",
        "From what I know, {fact}.",
        "It is a standard fact that {fact}.",
    ),
    "active_computation": (
        "{a} times {b} is {ab}.",
        "Adding {a} and {b} gives {a_plus_b}.",
        "{big} minus {a} equals {big_minus_a}.",
        "So {a} plus {b} plus {c} is {abc}.",
        "Multiplying {a} by {b}, I get {ab}.",
        "Now I compute {a} squared, which is {a_sq}.",
        "Half of {even} is {half}.",
        "Dividing {ab} by {b} gives back {a}.",
    ),
    "result_consolidation": (
        "So far I have {value}.",
        "Putting these together gives {value}.",
        "So the result of this step is {value}.",
        "Combining the pieces, I get {value}.",
    ),
    "uncertainty_management": (
        "Hmm, I am not completely sure about this part.",
        "I need to be careful with the arithmetic here.",
        "This is getting a bit complicated.",
        "Let me slow down a little.",
    ),
    "self_checking": (
        "That seems consistent with the earlier step.",
        "Yes, that matches what I had.",
        "Okay, that checks out.",
        "Good, the numbers line up.",
    ),
}
DISPLAY_TEMPLATE = "\\[ {a} \\times {b} = {ab} \\]"
# Short pieces (< 10 characters): the split rule merges each into the sentence after it.
LEAD_PIECES: tuple[str, ...] = ("Hmm.", "Okay.", "Right.", "So.", "Yes.", "Oh.", "Alright.", "Now.")
SETUP_QUOTE = "The problem is:"

# Body tag weights: early in a trace planning dominates, later computation does.
EARLY_TAG_WEIGHTS = {
    "plan_generation": 0.34, "fact_retrieval": 0.18, "active_computation": 0.24, "result_consolidation": 0.06,
    "uncertainty_management": 0.06, "self_checking": 0.12,
}
LATE_TAG_WEIGHTS = {
    "plan_generation": 0.12, "fact_retrieval": 0.13, "active_computation": 0.37, "result_consolidation": 0.12,
    "uncertainty_management": 0.11, "self_checking": 0.15,
}
EARLY_FRACTION = 0.15
CUE_PROBABILITY = 0.28  # P(cue template | the tag has a cue family), body chunks only
LEAD_PROBABILITY = 0.06
DISPLAY_PROBABILITY = 0.12  # of active_computation chunks


@dataclass(frozen=True)
class DraftChunk:
    """One chunk of a synthetic trace: its final text, how it is written, and what was planted."""

    text: str  # exactly what split_sentences returns for it
    rendered: str  # how it appears in the think text (lead piece joined by a space or a newline)
    tag: str
    cue: str | None = None  # cue family, None for plain chunks
    lead: str | None = None  # merged short piece, if any
    block: bool = False  # a display formula or the final answer: its own paragraph

    @property
    def ends_sentence(self) -> bool:
        return self.text[-1] in ".?!"


def template_fields(rng: random.Random, problem: SyntheticProblem, answer: str) -> dict[str, str]:
    """Fresh numbers and problem phrases for one sentence."""
    a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(2, 40)
    big, even = rng.randint(100, 999), 2 * rng.randint(10, 400)
    value = str(rng.choice([a * b, a + b, big - a, *problem.numbers]))
    return {
        "a": str(a), "b": str(b), "c": str(c), "ab": str(a * b), "a_plus_b": str(a + b), "abc": str(a + b + c),
        "big": str(big), "big_minus_a": str(big - a), "a_sq": str(a * a), "even": str(even), "half": str(even // 2),
        "value": value, "answer": answer, "topic": problem.topic, "goal": problem.goal,
        "plan": rng.choice(problem.plans), "alt_plan": rng.choice(problem.alt_plans),
        "fact": rng.choice(problem.facts), "thing": rng.choice(problem.things),
    }


def _sentence(rng: random.Random, text: str, tag: str, cue: str | None = None, allow_lead: bool = True) -> DraftChunk:
    if allow_lead and rng.random() < LEAD_PROBABILITY:
        lead = rng.choice([piece for piece in LEAD_PIECES if not text.startswith(piece[:-1])])
        separator = rng.choice([" ", " ", "\n"])
        return DraftChunk(f"{lead} {text}", f"{lead}{separator}{text}", tag, cue, lead)
    return DraftChunk(text, text, tag, cue)


def _body_chunk(rng: random.Random, problem: SyntheticProblem, answer: str, position: float) -> DraftChunk:
    weights = EARLY_TAG_WEIGHTS if position < EARLY_FRACTION else LATE_TAG_WEIGHTS
    tag = rng.choices(list(weights), weights=list(weights.values()))[0]
    fields = template_fields(rng, problem, answer)
    family = CUE_FAMILY_BY_TAG.get(tag)
    if family is not None and rng.random() < CUE_PROBABILITY:
        return _sentence(rng, rng.choice(CUE_TEMPLATES[family][1]).format(**fields), tag, cue=family)
    if tag == "active_computation" and rng.random() < DISPLAY_PROBABILITY:
        text = DISPLAY_TEMPLATE.format(**fields)
        return DraftChunk(text, text, tag, block=True)
    return _sentence(rng, rng.choice(PLAIN_TEMPLATES[tag]).format(**fields), tag)


def compose_chunks(rng: random.Random, problem: SyntheticProblem, n_chunks: int, answer: str) -> list[DraftChunk]:
    """``n_chunks`` chunks: problem setup, a body of tagged sentences, the answer, the boxed answer."""
    setup_fields = template_fields(rng, problem, answer)
    opening = rng.choice(PLAIN_TEMPLATES["problem_setup"][:2]).format(**setup_fields)
    display = f"\\[ {problem.display} \\]"
    chunks = [
        DraftChunk(opening, opening, "problem_setup"),
        DraftChunk(SETUP_QUOTE, SETUP_QUOTE, "problem_setup"),
        DraftChunk(display, display, "problem_setup", block=True),
    ]
    closing = f"So the final answer should be {answer}."
    final = f"**Final Answer**\nThe answer is \\boxed{{{answer}}}."
    n_body = n_chunks - len(chunks) - 2
    for _ in range(n_body):
        chunks.append(_body_chunk(rng, problem, answer, len(chunks) / (n_chunks - 1)))
    chunks.append(DraftChunk(closing, closing, "result_consolidation"))
    chunks.append(DraftChunk(final, final, "final_answer_emission", block=True))
    return chunks


def render_think(rng: random.Random, chunks: list[DraftChunk]) -> str:
    """Join chunks the way a model writes: a space, a newline or a blank line after a sentence,
    always a blank line after a piece that does not end a sentence (so the split rule cuts there) and
    around display formulas and the final answer."""
    parts = []
    for i, chunk in enumerate(chunks):
        parts.append(chunk.rendered)
        if i + 1 < len(chunks):
            paragraph = chunk.block or chunks[i + 1].block or not chunk.ends_sentence
            parts.append("\n\n" if paragraph else rng.choice([" ", " ", " ", "\n", "\n\n", "\n\n"]))
    return "".join(parts)
