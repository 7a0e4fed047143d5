"""The OOD system-prompt study in plain Python: which features, which probe, which judge.

Feature sets: the judge model's activations (the study proper), every random-weight registry model
(``source = "tiny"``: controls that cannot have learnt a preference) and the content baseline
(all-MiniLM-L6-v2 of the same text). Each gets its own probe, trained like the utility probes
(StandardScaler + Ridge on train tasks, alpha on half the eval tasks) on the task seen WITHOUT a
system prompt in the same rendering (chat template where the model has one), so with- and
without-prompt features differ only by the system prompt. Activations come from the platform's one
extraction core (``extract_sentence_embeddings``, last prompt token).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ta_platform.preferences.ood import OodPrompt, render_task
from ta_platform.preferences.utility_probes import fit_ridge_probe, split_halves

Log = Callable[[str], None]


def feature_models(registry: Mapping, judge_model: str) -> list[str]:
    """The judge model first, then every random-weight (``tiny``) model of the registry as a control."""
    controls = sorted(key for key, spec in registry.items() if spec.source == "tiny" and key != judge_model)
    return [judge_model, *controls]


def middle_layer(spec) -> int:
    """The middle configured layer (the preference study's default judge layer)."""
    indices = spec.layer_indices()
    return indices[len(indices) // 2]


def probe_training_rows(pool: pd.DataFrame, utilities: pd.DataFrame, max_tasks: int, seed: int) -> pd.DataFrame:
    """Tasks with a fitted utility, at most ``max_tasks`` (seeded, stratified by task set)."""
    mu = utilities.drop_duplicates("task_id").set_index("task_id")["mu"]
    rows = pool[pool["task_id"].isin(mu.index)].copy()
    rows["mu"] = mu.loc[rows["task_id"]].to_numpy()
    if len(rows) > max_tasks:
        rows = rows.groupby("task_set", group_keys=False).sample(frac=max_tasks / len(rows), random_state=seed)
    return rows.reset_index(drop=True)


class FeatureProbe:
    """Features of (system prompt, task) texts and a probe trained on the no-prompt features."""

    def __init__(self, name: str, embed: Callable[[list[str]], np.ndarray], render: Callable[[str, str | None], str],
                 pool: pd.DataFrame, training: pd.DataFrame, seed: int):
        self.name = name
        self.embed = embed
        self.render = render
        self.prompts = dict(zip(pool["task_id"].astype(str), pool["prompt"].astype(str), strict=True))
        self._cache: dict[tuple[str | None, str], np.ndarray] = {}
        train = training[training["task_set"] == "train"]
        evals = training[training["task_set"] == "eval"]
        select, _ = split_halves(len(evals), seed)
        x = self.features(None, training["task_id"].tolist())
        x_train, x_eval = x[(training["task_set"] == "train").to_numpy()], x[(training["task_set"] == "eval").to_numpy()]
        self.probe = fit_ridge_probe(x_train, train["mu"].to_numpy(), x_eval[select],
                                     evals["mu"].to_numpy()[select], seed=seed)

    def features(self, system_prompt: str | None, task_ids: Sequence[str]) -> np.ndarray:
        """Rows for ``task_ids`` seen with ``system_prompt``; each text is embedded once per study."""
        missing = list(dict.fromkeys(t for t in task_ids if (system_prompt, t) not in self._cache))
        if missing:
            rows = self.embed([self.render(self.prompts[t], system_prompt) for t in missing])
            self._cache.update({(system_prompt, t): row for t, row in zip(missing, rows, strict=True)})
        return np.stack([self._cache[(system_prompt, t)] for t in task_ids])

    def score(self, system_prompt: str | None, task_ids: Sequence[str]) -> np.ndarray:
        return self.probe.predict(self.features(system_prompt, task_ids))


def activation_embedder(loaded, layer: int, token_budget: int, log: Log) -> Callable[[list[str]], np.ndarray]:
    """Last-token activations of ``layer`` for a list of texts, through the platform's extraction core."""
    from ta_platform.extraction.extractor import TraceInput, extract_sentence_embeddings

    tokenizer = loaded.tokenizer
    bos = getattr(tokenizer, "bos_token", None)

    def embed(texts: list[str]) -> np.ndarray:
        special = not any(bos and t.startswith(bos) for t in texts)  # a chat template already has the BOS
        traces = [TraceInput(key=f"t{i}", text=t, char_spans=[(0, len(t))]) for i, t in enumerate(texts)]
        result = extract_sentence_embeddings(loaded.model, tokenizer, traces, [layer], pooling="last",
                                             token_budget=token_budget, max_length=loaded.max_length,
                                             add_special_tokens=special)
        if result.failures:
            raise ValueError(f"{loaded.spec.key}: {len(result.failures)} OOD text(s) could not be read, e.g. "
                             f"{result.failures[:1]}")
        order = {key: row for row, key in enumerate(result.index["trace_key"])}
        return result.embeddings[layer][[order[f"t{i}"] for i in range(len(texts))]]

    log(f"OOD features: {loaded.spec.key} layer L{layer}")
    return embed


def content_probe(pool: pd.DataFrame, training: pd.DataFrame, seed: int) -> FeatureProbe:
    """The content baseline: all-MiniLM-L6-v2 (or the documented fallback) of ``system\\n\\ntask``."""
    from ta_platform.preferences.content import content_embeddings

    method: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        result = content_embeddings(texts, seed=seed)
        method.append(result.method)
        return result.matrix

    probe = FeatureProbe("content", embed, lambda task, sp: render_task(None, task, sp), pool, training, seed)
    probe.name = f"content:{method[0]}"
    return probe


def model_probe(loaded, layer: int, token_budget: int, pool: pd.DataFrame, training: pd.DataFrame, seed: int,
                log: Log) -> FeatureProbe:
    embed = activation_embedder(loaded, layer, token_budget, log)
    return FeatureProbe(f"activations:{loaded.spec.key}/L{layer}", embed,
                        lambda task, sp: render_task(loaded.tokenizer, task, sp), pool, training, seed)


def longest_input_tokens(tokenizer, pool: pd.DataFrame) -> Callable[[OodPrompt], int]:
    """Tokens of a prompt's longest judge input (system prompt + the two longest tasks of the pool)."""
    from ta_platform.preferences.judges import build_comparison_prompt

    longest = pool["prompt"].astype(str).map(len).sort_values(ascending=False).index[:2]
    first, second = (str(pool.loc[i, "prompt"]) for i in longest)

    def count(prompt: OodPrompt) -> int:
        return len(tokenizer.encode(build_comparison_prompt(first, second, tokenizer, prompt.system_prompt)))

    return count
