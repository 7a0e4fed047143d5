"""OOD system-prompt experiments (seed 004, step 5): does a utility probe track induced preferences?

For each system prompt of an editable prompt set (``prompt_sets/ood_default.toml``) and each target
task: the behavioural delta is P(choose target | system prompt) - P(choose target | none), averaged
over ~50 utility-matched comparison tasks (both orders: the judge averages them); the probe delta is
the trained probe's score on features of the task seen with the system prompt minus without. Per
experiment: Pearson and Spearman r, sign agreement where |behavioural delta| >= 0.02, a seeded
permutation p-value (probe deltas permuted within each system prompt: items of one prompt share it)
and n. Why exact probabilities and not ~10 sampled repeats: the judges here
report P(choice) (logits, or the simulated Thurstonian model), so a repeat adds only noise.
"""

from __future__ import annotations

import hashlib
import io
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

from ta_platform.common.faults import DataFault
from ta_platform.common.text_files import read_text_strict
from ta_platform.preferences.judges import PairwiseJudge, Task
from ta_platform.probing.unit_bootstrap import stratified_permutation_p_value

DEFAULT_PROMPT_SET = Path(__file__).parent / "prompt_sets" / "ood_default.toml"
EXPERIMENTS = ("induce", "inverse", "competing", "persona")
SIGN_THRESHOLD = 0.02
RESULT_COLUMNS = ("experiment", "features", "pearson_r", "spearman_r", "sign_agreement", "p_value", "n")
P_VALUE_NOTE = ("p_value: two-sided permutation p of Pearson r, the probe deltas permuted within each system "
                "prompt (the unit of the design)")


@dataclass(frozen=True)
class OodPrompt:
    """One system prompt and the topics it should move (+1 up, -1 down)."""

    prompt_id: str
    experiment: str
    system_prompt: str
    targets: Mapping[str, float]


# --------------------------------------------------------------------------- prompt set


def load_prompt_set(path: str | Path, topics: Iterable[str]) -> list[OodPrompt]:
    """Read and validate a prompt-set TOML; every error is a ``DataFault`` naming the file and the prompt.

    Checked: a UTF-8 file, not empty, no runaway line (``common/text_files.py``); parseable TOML (a key
    given twice is a TOML error with its line) with a ``prompts`` list of tables; unique non-empty
    string ids; known experiment; a non-empty system prompt, unique in the file (after trimming and
    case-folding); targets naming known topics with direction +1 or -1 (integers: not true, 1.5 or nan).
    Any fault refuses the whole set: a study half of whose prompts were dropped would answer another
    question.
    """
    source = str(path)
    try:
        raw = tomllib.loads(read_text_strict(path, what="prompt set file"))
    except tomllib.TOMLDecodeError as error:
        raise DataFault(source, f"cannot parse TOML: {error}", kind="parse") from error
    entries = raw.get("prompts")
    if not isinstance(entries, list) or not entries:
        raise DataFault(source, "no [[prompts]] entries", kind="empty")
    known = set(map(str, topics))
    prompts, seen_ids, seen_text = [], {}, {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise DataFault(source, f"prompt {number}: expected a [[prompts]] table, got {type(entry).__name__} "
                            f"{entry!r}", kind="type")
        name = entry.get("id", "")
        if not isinstance(name, str):
            raise DataFault(source, f"prompt {number} ({name!r}): id must be a string, got {type(name).__name__}",
                            kind="type")
        name = name.strip()
        where = f"prompt {number} ({name or 'no id'})"
        if not name:
            raise DataFault(source, f"{where}: missing id", kind="invalid")
        if name in seen_ids:
            raise DataFault(source, f"{where}: duplicate id {name!r} (first at prompt {seen_ids[name]})",
                            kind="duplicate")
        missing = [key for key in ("experiment", "system_prompt", "targets") if key not in entry]
        if missing:
            raise DataFault(source, f"{where}: missing key(s) {missing}", kind="missing_key")
        experiment = entry.get("experiment", "")
        if experiment not in EXPERIMENTS:
            raise DataFault(source, f"{where}: experiment {experiment!r} is not one of {list(EXPERIMENTS)}",
                            kind="invalid")
        text = entry.get("system_prompt")
        if text is not None and not isinstance(text, str):
            raise DataFault(source, f"{where}: system_prompt must be a string, got {type(text).__name__} {text!r}",
                            kind="type")
        if not isinstance(text, str) or not text.strip():
            raise DataFault(source, f"{where}: empty system prompt", kind="invalid")
        folded = " ".join(text.split()).casefold()
        if folded in seen_text:
            raise DataFault(source, f"{where}: duplicate system prompt (same text as {seen_text[folded]!r})",
                            kind="invalid")
        targets = entry.get("targets")
        if not isinstance(targets, dict) or not targets:
            raise DataFault(source, f"{where}: no targets", kind="invalid")
        unknown = sorted(set(targets) - known)
        if unknown:
            raise DataFault(source, f"{where}: unknown target topic(s) {unknown} (task pool topics: {sorted(known)})",
                            kind="invalid")
        bad = {t: d for t, d in targets.items() if isinstance(d, bool) or not isinstance(d, int) or d not in (1, -1)}
        if bad:
            raise DataFault(source, f"{where}: target directions must be +1 or -1, got {bad}", kind="invalid")
        seen_ids[name] = number
        seen_text[folded] = name
        prompts.append(OodPrompt(name, experiment, text.strip(), {str(t): float(d) for t, d in targets.items()}))
    return prompts


def check_prompt_lengths(prompts: Sequence[OodPrompt], longest_text: Callable[[OodPrompt], int], limit: int | None,
                         source: str) -> None:
    """``DataFault`` naming the first prompt whose longest rendered input exceeds ``limit`` tokens."""
    if not limit:
        return
    for prompt in prompts:
        n = longest_text(prompt)
        if n > limit:
            raise DataFault(source, f"prompt {prompt.prompt_id!r}: its longest judge input is {n} tokens, longer "
                                    f"than the model's context of {limit}", kind="too_long")


def prompt_frame(prompts: Sequence[OodPrompt]) -> pd.DataFrame:
    """One row per (prompt, target topic): ``experiment, prompt_id, category, system_prompt, target, direction``."""
    return pd.DataFrame([{"experiment": p.experiment, "prompt_id": p.prompt_id, "category": p.experiment,
                          "system_prompt": p.system_prompt, "target": topic, "direction": direction}
                         for p in prompts for topic, direction in p.targets.items()])


# --------------------------------------------------------------------------- tasks


def choose_targets(pool: pd.DataFrame, prompt: OodPrompt, *, n_per_topic: int, n_off_target: int,
                   seed: int) -> list[str]:
    """Seeded target tasks: ``n_per_topic`` of each target topic plus ``n_off_target`` of other topics.

    The generator is seeded by (seed, a hash of the prompt id): a sum of character codes would give
    anagram ids ("love_art" / "art_love"...) the same targets."""
    rng = np.random.default_rng([seed, _id_seed(prompt.prompt_id)])
    chosen: list[str] = []
    for topic in sorted(prompt.targets):
        ids = pool.loc[pool["topic"] == topic, "task_id"].to_numpy()
        chosen += rng.choice(ids, min(n_per_topic, len(ids)), replace=False).tolist()
    others = pool.loc[~pool["topic"].isin(list(prompt.targets)), "task_id"].to_numpy()
    chosen += rng.choice(others, min(n_off_target, len(others)), replace=False).tolist()
    return [str(t) for t in chosen]


def _id_seed(identifier: str) -> int:
    """A 64-bit integer from sha256 of ``identifier``: distinct ids (anagrams included) seed distinct streams."""
    return int.from_bytes(hashlib.sha256(identifier.encode("utf-8")).digest()[:8], "little")


def matched_comparisons(pool: pd.DataFrame, mu: pd.Series, target: str, exclude_topics: Iterable[str],
                        n: int) -> list[str]:
    """The ``n`` tasks closest in utility to ``target`` outside the prompt's topics (utility-matched)."""
    candidates = pool[~pool["topic"].isin(list(exclude_topics)) & (pool["task_id"] != target)]
    candidates = candidates[candidates["task_id"].isin(mu.index)]
    gap = (mu.loc[candidates["task_id"]].to_numpy() - mu.loc[target]).__abs__()
    order = np.argsort(gap, kind="stable")[:n]
    return candidates["task_id"].to_numpy()[order].astype(str).tolist()


# --------------------------------------------------------------------------- behaviour


def behavioural_deltas(judge_for: Callable[[str | None], PairwiseJudge], pool: pd.DataFrame, mu: pd.Series,
                       prompts: Sequence[OodPrompt], targets: Mapping[str, Sequence[str]], *, n_comparisons: int,
                       log: Callable[[str], None] = print) -> pd.DataFrame:
    """``experiment, prompt_id, task_id, behavioural_delta, n_comparisons`` per (prompt, target task).

    ``judge_for(system_prompt)`` returns a judge under that prompt (None: no system prompt); its
    ``prefer_first`` is P(first chosen) with both orders averaged. Baseline probabilities of a
    (target, comparison) pair are computed once and shared by every prompt.
    """
    tasks = {str(t): Task(str(t), str(p)) for t, p in zip(pool["task_id"], pool["prompt"], strict=True)}
    plans = {p.prompt_id: {t: matched_comparisons(pool, mu, t, p.targets, n_comparisons) for t in targets[p.prompt_id]}
             for p in prompts}
    baseline_pairs = sorted({(t, c) for plan in plans.values() for t, cs in plan.items() for c in cs})
    base = judge_for(None).prefer_first([(tasks[t], tasks[c]) for t, c in baseline_pairs])
    base_p = dict(zip(baseline_pairs, np.asarray(base, float), strict=True))
    log(f"OOD behaviour: {len(baseline_pairs)} baseline comparisons")
    rows = []
    for prompt in prompts:
        plan = plans[prompt.prompt_id]
        pairs = [(t, c) for t, cs in plan.items() for c in cs]
        with_prompt = np.asarray(judge_for(prompt.system_prompt).prefer_first(
            [(tasks[t], tasks[c]) for t, c in pairs]), float)
        frame = pd.DataFrame({"task_id": [t for t, _ in pairs],
                              "delta": with_prompt - np.array([base_p[pair] for pair in pairs])})
        for task_id, group in frame.groupby("task_id", sort=False):
            rows.append({"experiment": prompt.experiment, "prompt_id": prompt.prompt_id, "task_id": task_id,
                         "behavioural_delta": float(group["delta"].mean()), "n_comparisons": len(group)})
        log(f"OOD behaviour: prompt {prompt.prompt_id!r}: {len(pairs)} comparisons")
    return pd.DataFrame(rows)


def simulated_shift(prompts: Sequence[OodPrompt], topic_of: Mapping[str, str], strength: float = 1.0):
    """A ``SimulatedJudge.utility_shift`` moving a task's utility by ``strength * direction`` of its topic."""
    by_text = {p.system_prompt: p.targets for p in prompts}

    def shift(system_prompt: str, task: Task) -> float:
        return strength * by_text.get(system_prompt, {}).get(topic_of.get(task.task_id, ""), 0.0)

    return shift


# --------------------------------------------------------------------------- features


def render_task(tokenizer, task_prompt: str, system_prompt: str | None) -> str:
    """The text a feature model reads: the task as a user turn (chat template when the tokenizer has
    one, so a system prompt goes where the judge sees it), else ``system\\n\\ntask``."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": task_prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{system_prompt}\n\n{task_prompt}" if system_prompt else task_prompt


def probe_deltas(score: Callable[[str | None, Sequence[str]], np.ndarray], prompts: Sequence[OodPrompt],
                 targets: Mapping[str, Sequence[str]], features: str) -> pd.DataFrame:
    """``experiment, prompt_id, task_id, features, probe_delta`` from ``score(system_prompt, task_ids)``."""
    rows = []
    for prompt in prompts:
        ids = list(targets[prompt.prompt_id])
        delta = np.asarray(score(prompt.system_prompt, ids), float) - np.asarray(score(None, ids), float)
        rows += [{"experiment": prompt.experiment, "prompt_id": prompt.prompt_id, "task_id": t, "features": features,
                  "probe_delta": float(d)} for t, d in zip(ids, delta, strict=True)]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- statistics


def sign_agreement(behavioural: np.ndarray, probe: np.ndarray, threshold: float = SIGN_THRESHOLD) -> float:
    """Share of items with |behavioural delta| >= threshold whose probe delta has the same sign (NaN if none)."""
    b, p = np.asarray(behavioural, float), np.asarray(probe, float)
    keep = np.abs(b) >= threshold
    if not keep.any():
        return float("nan")
    return float(np.mean(np.sign(b[keep]) == np.sign(p[keep])))


def _abs_pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return abs(float(np.corrcoef(x, y)[0, 1]))


def permutation_p_value(behavioural: np.ndarray, probe: np.ndarray, strata: np.ndarray, *,
                        n_permutations: int = 1000, seed: int = 0) -> float:
    """Two-sided permutation p of Pearson r with the probe deltas permuted WITHIN each stratum (system prompt).

    Why within prompt: every item of one prompt shares that prompt, so a prompt that moves both the
    behaviour and the probe by an offset (a prompt-level effect, e.g. a longer prompt shifting every
    activation) correlates the pooled deltas without the probe tracking any task's change. Permuting
    within prompts keeps those offsets in the null, so only tracking of which TASK moved counts.
    ``(1 + #{|r_perm| >= |r|}) / (1 + n_permutations)``, seeded (``probing.unit_bootstrap``); NaN when r is
    undefined; 1.0 when no stratum has two items (nothing to permute: no evidence).
    """
    b, p = np.asarray(behavioural, float), np.asarray(probe, float)
    return stratified_permutation_p_value(_abs_pearson, b, p, np.asarray(strata), n_permutations=n_permutations,
                                          seed=seed)


def delta_statistics(behavioural: np.ndarray, probe: np.ndarray, strata: np.ndarray, *,
                     threshold: float = SIGN_THRESHOLD, n_permutations: int = 1000, seed: int = 0) -> dict[str, float]:
    """Pearson r, Spearman r, sign agreement, within-prompt permutation p and n of two delta vectors.

    ``strata``: the system prompt of each item (the permutation stratum). NaN where undefined."""
    b, p = np.asarray(behavioural, float), np.asarray(probe, float)
    strata = np.asarray(strata)
    finite = np.isfinite(b) & np.isfinite(p)
    b, p, strata = b[finite], p[finite], strata[finite]
    defined = len(b) >= 3 and b.std() > 0 and p.std() > 0
    return {"pearson_r": float(pearsonr(b, p).statistic) if defined else float("nan"),
            "spearman_r": float(spearmanr(b, p).statistic) if defined else float("nan"),
            "sign_agreement": sign_agreement(b, p, threshold),
            "p_value": permutation_p_value(b, p, strata, n_permutations=n_permutations, seed=seed),
            "n": int(len(b))}


def results_table(deltas: pd.DataFrame, *, n_permutations: int = 1000, seed: int = 0) -> pd.DataFrame:
    """``RESULT_COLUMNS`` per (experiment, features), plus ``pooled`` over experiments.

    The p-value permutes probe deltas within each system prompt (``prompt_id``), pooled included."""
    rows = []
    for features, by_features in deltas.groupby("features", sort=True):
        groups = [(e, g) for e, g in by_features.groupby("experiment", sort=True)] + [("pooled", by_features)]
        for experiment, group in groups:
            stats = delta_statistics(group["behavioural_delta"].to_numpy(), group["probe_delta"].to_numpy(),
                                     group["prompt_id"].astype(str).to_numpy(), n_permutations=n_permutations,
                                     seed=seed)
            rows.append({"experiment": experiment, "features": features, **stats})
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def scatter_png(deltas: pd.DataFrame, results: pd.DataFrame) -> bytes:
    """One panel per feature set: probe delta against behavioural delta, coloured by experiment."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    features = sorted(deltas["features"].unique())
    figure = Figure(figsize=(4.0 * max(len(features), 1), 3.8), dpi=100)
    axes = np.atleast_1d(figure.subplots(1, max(len(features), 1)))
    for ax, name in zip(axes, features, strict=False):
        data = deltas[deltas["features"] == name]
        for experiment, group in data.groupby("experiment"):
            ax.scatter(group["behavioural_delta"], group["probe_delta"], s=14, label=experiment)
        pooled = results[(results["features"] == name) & (results["experiment"] == "pooled")]
        r = pooled["pearson_r"].iloc[0] if len(pooled) else float("nan")
        p = pooled["p_value"].iloc[0] if len(pooled) else float("nan")
        ax.set_title(f"{name}\npooled r={r:.2f}, p={p:.3f} (within-prompt permutation)", fontsize=8)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_xlabel("behavioural delta", fontsize=8)
        ax.set_ylabel("probe delta", fontsize=8)
        ax.legend(fontsize=6)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------- checks


def incomplete_results(results: pd.DataFrame, experiments: Iterable[str], min_n: int = 3) -> list[str]:
    """``"experiment/features"`` cells missing from ``results`` or with n < ``min_n`` or a non-finite r."""
    features = sorted(results["features"].unique()) if len(results) else []
    if not features:
        return ["no feature sets"]
    have = {(r.experiment, r.features): r for r in results.itertuples()}
    missing = []
    for experiment in sorted(set(experiments)):
        for name in features:
            row = have.get((experiment, name))
            if row is None or row.n < min_n or not np.isfinite(row.pearson_r):
                missing.append(f"{experiment}/{name}")
    return missing


def direction_agreement(behaviour: pd.DataFrame, prompts: pd.DataFrame, topic_of: Mapping[str, str]) -> float:
    """Share of TARGET tasks (topic named by the prompt) whose behavioural delta has the prompt's sign."""
    direction = {(r.prompt_id, r.target): r.direction for r in prompts.itertuples()}
    signs = [np.sign(row.behavioural_delta) == np.sign(direction[(row.prompt_id, topic_of[row.task_id])])
             for row in behaviour.itertuples() if (row.prompt_id, topic_of.get(row.task_id)) in direction]
    return float(np.mean(signs)) if signs else float("nan")
