"""Synthetic competition-style math problems for the embedded dataset.

Why: the embedded dataset must look like math-rollouts (problem.json fields, a problem statement in
the prompt, a ground-truth answer that the correct traces box and the incorrect ones miss) without
copying any real data. Each family computes its own answer, so correct traces really are correct.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

# Real problem IDs in ../shared/realdata: never reused, so the two can be served side by side.
REAL_SAMPLE_IDS = frozenset({330, 1591, 2189, 2236, 2238, 3448})


@dataclass(frozen=True)
class SyntheticProblem:
    problem_id: str
    problem: str  # statement, as in problem.json
    display: str  # LaTeX of one formula line, shown as \\[ ... \\] in the think text
    topic: str
    goal: str
    answer: str
    wrong_answer: str
    gt_solution: str
    nickname: str
    level: str
    type: str
    plans: tuple[str, ...]  # verb phrases: "find the number of terms"
    alt_plans: tuple[str, ...]  # verb phrases for a change of approach
    facts: tuple[str, ...]  # clauses: "the sum of ... is ..."
    things: tuple[str, ...]  # nouns a trace can get wrong: "number of terms"
    numbers: tuple[int, ...] = field(default=())  # numbers that occur in the problem

    def problem_json(self) -> dict[str, str]:
        return {
            "problem": self.problem,
            "level": self.level,
            "type": self.type,
            "gt_solution": self.gt_solution,
            "gt_answer": self.answer,
            "nickname": self.nickname,
        }


def _wrong(rng: random.Random, answer: int) -> str:
    offset = rng.choice([-3, -2, -1, 1, 2, 3, 10, -10]) * max(1, abs(answer) // 50)
    return str(answer + offset if answer + offset != answer else answer + 1)


def arithmetic_series(rng: random.Random, problem_id: str) -> SyntheticProblem:
    a, d, n = rng.randint(1, 9), rng.randint(2, 7), rng.randint(12, 40)
    last = a + (n - 1) * d
    total = n * (a + last) // 2
    return SyntheticProblem(
        problem_id=problem_id,
        problem=f"Compute the sum $${a} + {a + d} + {a + 2 * d} + \\cdots + {last}$$",
        display=f"{a} + {a + d} + {a + 2 * d} + \\cdots + {last}",
        topic="arithmetic series",
        goal="the sum of the series",
        answer=str(total),
        wrong_answer=_wrong(rng, total),
        gt_solution=f"There are $\\frac{{{last}-{a}}}{{{d}}}+1={n}$ terms, so the sum is "
        f"$\\frac{{{n}({a}+{last})}}{{2}}=\\boxed{{{total}}}$.",
        nickname="Stepping Sum",
        level="Level 3",
        type="Algebra",
        plans=("find the number of terms", "write out the first few terms", "add the terms in order"),
        alt_plans=("pair the first and last terms", "use the formula for an arithmetic series"),
        facts=(
            "the sum of an arithmetic series is the number of terms times the average of the first and last terms",
            f"consecutive terms here differ by {d}",
        ),
        things=("number of terms", "common difference", "last term"),
        numbers=(a, d, n, last),
    )


def nested_expression(rng: random.Random, problem_id: str) -> SyntheticProblem:
    k, depth = rng.randint(2, 4), rng.randint(4, 7)
    inner = f"1+{k}"
    value = 1 + k
    for _ in range(depth - 1):
        inner = f"1+{k}({inner})"
        value = 1 + k * value
    total = k * value
    expression = f"{k}({inner})"
    return SyntheticProblem(
        problem_id=problem_id,
        problem=f"Compute\n\n${expression}$",
        display=f"{expression}",
        topic="nested expression",
        goal="the value of the nested expression",
        answer=str(total),
        wrong_answer=_wrong(rng, total),
        gt_solution=f"Expanding from the inside gives the geometric series ${k}+{k}^2+\\cdots+{k}^{{{depth + 1}}}$, "
        f"whose sum is $\\boxed{{{total}}}$.",
        nickname="Nested Multiplication",
        level="Level 5",
        type="Algebra",
        plans=("start from the innermost parentheses", "work outward one layer at a time", "keep track of each layer"),
        alt_plans=("rewrite the expression as a geometric series", "expand the product into powers of the base"),
        facts=(f"a geometric series with ratio {k} has a closed form", "multiplication distributes over addition"),
        things=("innermost layer", "number of layers", "last multiplication"),
        numbers=(k, depth),
    )


def linear_equation(rng: random.Random, problem_id: str) -> SyntheticProblem:
    a, x, b = rng.randint(2, 12), rng.randint(-9, 15), rng.randint(1, 40)
    c = a * x + b
    return SyntheticProblem(
        problem_id=problem_id,
        problem=f"Solve for $x$: ${a}x + {b} = {c}$",
        display=f"{a}x + {b} = {c}",
        topic="linear equation",
        goal="the value of x",
        answer=str(x),
        wrong_answer=_wrong(rng, x),
        gt_solution=f"Subtracting {b} gives ${a}x={c - b}$, so $x=\\boxed{{{x}}}$.",
        nickname="Balancing Act",
        level="Level 2",
        type="Algebra",
        plans=("isolate x", "move the constant to the other side", "divide both sides by the coefficient"),
        alt_plans=("guess a value and adjust it", "substitute candidate values directly"),
        facts=("the same operation on both sides keeps an equation balanced", "dividing by a nonzero number is allowed"),
        things=("sign of the constant", "coefficient of x", "subtraction"),
        numbers=(a, b, c),
    )


def remainder_problem(rng: random.Random, problem_id: str) -> SyntheticProblem:
    base, exponent, modulus = rng.randint(2, 9), rng.randint(20, 120), rng.choice([5, 7, 9, 11, 13])
    result = pow(base, exponent, modulus)
    return SyntheticProblem(
        problem_id=problem_id,
        problem=f"What is the remainder when ${base}^{{{exponent}}}$ is divided by {modulus}?",
        display=f"{base}^{{{exponent}}} \\bmod {modulus}",
        topic="modular arithmetic",
        goal="the remainder",
        answer=str(result),
        wrong_answer=str((result + rng.randint(1, modulus - 1)) % modulus),
        gt_solution=f"The powers of {base} repeat modulo {modulus}, which gives a remainder of $\\boxed{{{result}}}$.",
        nickname="Cycling Powers",
        level="Level 4",
        type="Number Theory",
        plans=("compute the first few powers modulo the divisor", "look for a repeating cycle", "reduce the exponent"),
        alt_plans=("use Fermat's little theorem to shrink the exponent", "reduce the exponent by the cycle length"),
        facts=("remainders of powers repeat with a fixed period", f"the divisor {modulus} is small enough to tabulate"),
        things=("cycle length", "exponent reduction", "remainder table"),
        numbers=(base, exponent, modulus),
    )


def rectangle_area(rng: random.Random, problem_id: str) -> SyntheticProblem:
    length, width = rng.randint(5, 30), rng.randint(2, 20)
    perimeter = 2 * (length + width)
    area = length * width
    return SyntheticProblem(
        problem_id=problem_id,
        problem=f"A rectangle has a perimeter of {perimeter} units and a length of {length} units. "
        "What is its area in square units?",
        display=f"2(\\ell + w) = {perimeter}, \\ell = {length}",
        topic="rectangle",
        goal="the area of the rectangle",
        answer=str(area),
        wrong_answer=_wrong(rng, area),
        gt_solution=f"The width is ${perimeter}/2-{length}={width}$, so the area is $\\boxed{{{area}}}$.",
        nickname="Fenced Field",
        level="Level 2",
        type="Prealgebra",
        plans=("find the width from the perimeter", "halve the perimeter", "multiply length by width"),
        alt_plans=("set up an equation for the width", "draw the rectangle and label the sides"),
        facts=("the perimeter of a rectangle is twice the sum of its length and width", "area is length times width"),
        things=("width", "half perimeter", "units"),
        numbers=(perimeter, length),
    )


def multiples_count(rng: random.Random, problem_id: str) -> SyntheticProblem:
    first, second = rng.sample([2, 3, 5, 7, 11], 2)
    limit = rng.randint(60, 400)
    both = first * second // math.gcd(first, second)
    count = (limit - 1) // first + (limit - 1) // second - (limit - 1) // both
    return SyntheticProblem(
        problem_id=problem_id,
        problem=f"How many positive integers less than {limit} are multiples of {first} or {second}?",
        display=f"n < {limit}, {first} \\mid n \\text{{ or }} {second} \\mid n",
        topic="counting",
        goal="how many integers qualify",
        answer=str(count),
        wrong_answer=_wrong(rng, count),
        gt_solution=f"By inclusion-exclusion the count is $\\boxed{{{count}}}$.",
        nickname="Either Or",
        level="Level 3",
        type="Counting & Probability",
        plans=("count the multiples of each number", "subtract the overlap", "list the small cases"),
        alt_plans=("apply inclusion and exclusion", "count the complement"),
        facts=("the multiples of both numbers are the multiples of their least common multiple",
               "floor division counts the multiples below a bound"),
        things=("overlap", "upper bound", "count of multiples"),
        numbers=(first, second, limit),
    )


def binomial_coefficient(rng: random.Random, problem_id: str) -> SyntheticProblem:
    n = rng.randint(4, 9)
    k, c = rng.randint(1, n - 1), rng.randint(2, 4)
    coefficient = math.comb(n, k) * c ** (n - k)
    return SyntheticProblem(
        problem_id=problem_id,
        problem=f"What is the coefficient of $x^{k}$ in the expansion of $(x+{c})^{n}$?",
        display=f"(x+{c})^{n}",
        topic="binomial expansion",
        goal=f"the coefficient of x to the power {k}",
        answer=str(coefficient),
        wrong_answer=_wrong(rng, coefficient),
        gt_solution=f"The term is $\\binom{{{n}}}{{{k}}}{c}^{{{n - k}}}x^{k}$, so the coefficient is "
        f"$\\boxed{{{coefficient}}}$.",
        nickname="Binomial Pick",
        level="Level 4",
        type="Counting & Probability",
        plans=("write the general term of the expansion", "pick the term with the right power", "compute the binomial coefficient"),
        alt_plans=("use the binomial theorem directly", "expand a smaller power and look for a pattern"),
        facts=("the binomial theorem gives each term as a binomial coefficient times powers", "n choose k equals n choose n minus k"),
        things=("binomial coefficient", "power of the constant", "exponent"),
        numbers=(n, k, c),
    )


FAMILIES: tuple[Callable[[random.Random, str], SyntheticProblem], ...] = (
    arithmetic_series,
    nested_expression,
    linear_equation,
    remainder_problem,
    rectangle_area,
    multiples_count,
    binomial_coefficient,
)


def make_problems(seed: int, n_problems: int) -> list[SyntheticProblem]:
    """``n_problems`` problems with distinct numeric IDs AND distinct statements, families in rotation,
    all from ``seed``. A family with few parameters can draw a statement twice; the same problem
    under two ids would sit in two splits (the split-leakage check names it), so it is redrawn."""
    rng = random.Random(f"ta-embedded:{seed}:problems")
    candidates = [i for i in range(100, 5000) if i not in REAL_SAMPLE_IDS]
    ids = sorted(rng.sample(candidates, n_problems))
    problems: list[SyntheticProblem] = []
    statements: set[str] = set()
    for i, problem_id in enumerate(ids):
        problem = _distinct_problem(rng, str(problem_id), i, statements)
        statements.add(problem.problem_json()["problem"])
        problems.append(problem)
    return problems


DRAWS_PER_FAMILY = 50


def _distinct_problem(rng: random.Random, problem_id: str, position: int, taken: set[str]) -> SyntheticProblem:
    """A problem whose statement is not in ``taken``: the rotation's family first; a family whose few
    parameters are used up (nested_expression has 12 statements) hands over to the next family."""
    for attempt in range(DRAWS_PER_FAMILY * len(FAMILIES)):
        family = FAMILIES[(position + attempt // DRAWS_PER_FAMILY) % len(FAMILIES)]
        problem = family(rng, problem_id)
        if problem.problem_json()["problem"] not in taken:
            return problem
    raise ValueError(f"cannot draw a problem statement distinct from {len(taken)} others: every family is used up")
