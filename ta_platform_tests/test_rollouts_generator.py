"""The embedded dataset: deterministic, shaped like the real files, and carrying the documented plant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ta_platform.common.hashing import sha256_file
from ta_platform.rollouts.generator import MANIFEST_FILE, generate_dataset, planted_anchors, read_manifest
from ta_platform.rollouts.layout import FUNCTION_TAGS, KNOWN_MODELS, SPLITS, TRACE_FILES
from ta_platform.rollouts.sentence_split import split_sentences
from ta_platform.rollouts.sources import LocalRolloutSource, load_traces
from ta_platform.rollouts.synthetic_sentences import CUE_WORDS

REAL_ROLLOUTS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "math-rollouts"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The default-sized dataset (24 problems, seed 0) and its parsed traces."""
    root = tmp_path_factory.mktemp("embedded") / "data"
    manifest = generate_dataset(root, seed=0, n_problems=24)
    traces, faults = load_traces(LocalRolloutSource(root))
    assert faults == []
    return root, manifest, traces


def sentence_table(traces):
    """One row per sentence (last chunk dropped) with the anchor label of the documented rule."""
    rows = []
    for trace in traces:
        n = trace.n_chunks
        anchors = set(planted_anchors(trace.chunks))
        for chunk in trace.chunks[:-1]:
            i = chunk["chunk_idx"]
            rows.append({"problem_id": trace.problem_id, "text": chunk["chunk"], "tag": chunk["function_tags"][0],
                         "pos": i / (n - 1), "anchor": int(i in anchors)})
    return rows


def file_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_output(tmp_path):
    generate_dataset(tmp_path / "a", seed=5, n_problems=2)
    generate_dataset(tmp_path / "b", seed=5, n_problems=2)
    generate_dataset(tmp_path / "c", seed=6, n_problems=2)
    a, b, c = (file_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert len(a) == 2 * 2 * 2 * 3 + 1  # models x splits x problems x files + manifest
    assert a != c


def test_layout_and_manifest(full):
    root, manifest, traces = full
    assert (root / MANIFEST_FILE).is_file() and read_manifest(root) == json.loads(json.dumps(manifest))
    assert manifest["n_traces"] == len(traces) == 96
    assert {t.model for t in traces} == set(KNOWN_MODELS) and {t.split for t in traces} == set(SPLITS)
    assert len(set(manifest["problem_ids"])) == 24
    assert not set(manifest["problem_ids"]) & {"330", "1591", "2189", "2236", "2238", "3448"}
    for trace in traces:
        truth = manifest["traces"][trace.key]
        assert truth["files"] == {name: sha256_file(root / trace.ref.relative_dir / name) for name in TRACE_FILES}
        assert truth["n_chunks"] == trace.n_chunks
        assert truth["anchors"] == planted_anchors(trace.chunks)
        for i in truth["cue_chunks"]:
            family = truth["cue_family_by_chunk"][str(i)]
            words = set(trace.chunks[i]["chunk"].lower().replace(",", " ").replace("-", " ").split())
            assert words & set(CUE_WORDS[family]), trace.chunks[i]["chunk"]


def test_schema_and_text_contract(full):
    _, _, traces = full
    for trace in traces:
        base = trace.base_solution
        correct = trace.setting == "correct"
        assert base["prompt"].endswith("Solution: \n<think>\n") and trace.problem["problem"] in base["prompt"]
        assert base["full_cot"] == base["prompt"] + base["solution"] and "</think>" in base["solution"]
        assert base["is_correct"] is correct
        assert (base["answer"] == trace.problem["gt_answer"]) is correct
        assert f"\\boxed{{{base['answer']}}}" in trace.chunks[-1]["chunk"]
        assert 20 <= trace.n_chunks <= 150
        assert split_sentences(trace.think_text) == trace.chunk_texts  # round trip through the split rule
        for chunk in trace.chunks:
            assert len(chunk["function_tags"]) == 1 and chunk["function_tags"][0] in FUNCTION_TAGS
            assert all(d.isdigit() and int(d) < chunk["chunk_idx"] for d in chunk["depends_on"])
    leads = [c for t in traces for c in t.chunks if len(c["chunk"].split(" ", 1)[0]) < 10 and c["chunk"].split(" ")[0]
             in {"Hmm.", "Okay.", "Right.", "So.", "Yes.", "Oh.", "Alright.", "Now."}]
    assert len(leads) > 50  # short pieces merged by the rule
    not_substrings = [c for t in traces for c in t.chunks if c["chunk"] not in t.full_cot]
    assert not_substrings  # merged across a newline: only whitespace-flexible alignment finds them


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_ROLLOUTS.is_dir(), reason=f"real traces absent: {REAL_ROLLOUTS}")
def test_same_keys_and_types_as_the_real_files(full):
    def type_name(value) -> str:
        if isinstance(value, list):
            return "list[" + ",".join(sorted({type_name(item) for item in value})) + "]"
        return type(value).__name__

    def schema(root: Path) -> dict[str, dict[str, set[str]]]:
        """file name -> key -> set of type names (lists: element types) seen over every record."""
        found: dict[str, dict[str, set[str]]] = {}
        for folder in root.glob("*/temperature_0.6_top_p_0.95/*_base_solution/problem_*"):
            for name in TRACE_FILES:
                payload = json.loads((folder / name).read_text())
                for record in payload if isinstance(payload, list) else [payload]:
                    for key, value in record.items():
                        found.setdefault(name, {}).setdefault(key, set()).add(type_name(value))
        return found

    real, generated = schema(REAL_ROLLOUTS), schema(full[0])
    for name in TRACE_FILES:
        assert generated[name].keys() == real[name].keys(), name
        for key in real[name]:
            # Lists may be empty in one dataset and not the other; the element types must agree.
            def normal(types):
                return {t for t in types if t != "list[]"}
            assert normal(generated[name][key]) == normal(real[name][key]), (name, key)
    # The raw formatting matches too: indent 2, no trailing newline.
    real_text = next(REAL_ROLLOUTS.glob("*/*/*/problem_*/chunks_labeled.json")).read_text()
    generated_text = next(full[0].glob("*/*/*/problem_*/chunks_labeled.json")).read_text()
    assert real_text[:8] == generated_text[:8] and not generated_text.endswith("\n")


def test_importances_zeros_ties_last_chunk_and_accuracy(full):
    _, _, traces = full
    all_ci, ties = [], 0
    for trace in traces:
        ci = [c["counterfactual_importance_accuracy"] for c in trace.chunks]
        accuracy = [c["accuracy"] for c in trace.chunks]
        assert ci[-1] == 0.0 and trace.chunks[-1]["resampling_importance_accuracy"] == 0.0
        for i in range(trace.n_chunks - 1):
            assert trace.chunks[i]["resampling_importance_accuracy"] == accuracy[i + 1] - accuracy[i]
        assert accuracy[-1] == (1.0 if trace.setting == "correct" else 0.0)
        assert all(abs(round(v * 100) - v * 100) < 1e-6 and -1 <= v <= 1 for v in ci)
        nonzero = [abs(v) for v in ci if v != 0]
        ties += len(nonzero) - len(set(nonzero))
        all_ci += ci
    all_ci = np.array(all_ci)
    assert 0.25 <= np.mean(all_ci == 0) <= 0.45  # real: 37%
    assert ties > 1000
    assert (all_ci < 0).any() and (all_ci > 0).any()


def test_position_confound_like_the_real_data(full):
    rows = sentence_table(full[2])
    positions = np.array([r["pos"] for r in rows if r["anchor"]])
    assert 0.07 <= np.mean([r["anchor"] for r in rows]) <= 0.14
    assert 0.15 <= np.mean(positions < 0.1) <= 0.35  # real: 25% of anchors in the first tenth
    assert np.mean(positions >= 0.75) <= 0.07  # real: 3% in the last quarter


def test_planted_content_signal_beats_position_and_tag_baselines(full):
    """Leave-problems-out (4 folds by problem id): bag-of-words clearly beats position and tag, not perfectly."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import GroupKFold

    rows = sentence_table(full[2])
    texts = [r["text"] for r in rows]
    y = np.array([r["anchor"] for r in rows])
    groups = np.array([r["problem_id"] for r in rows])
    position = np.array([[r["pos"], r["pos"] ** 2] for r in rows])
    tags = np.array([[r["tag"] == tag for tag in FUNCTION_TAGS] for r in rows], dtype=float)
    scores = {"bow": [], "position": [], "tag": []}
    for train, test in GroupKFold(n_splits=4).split(texts, y, groups):
        assert not set(groups[train]) & set(groups[test])
        vectorizer = CountVectorizer(binary=True)
        bow_train = vectorizer.fit_transform([texts[i] for i in train])
        bow_test = vectorizer.transform([texts[i] for i in test])
        for name, x_train, x_test in (("bow", bow_train, bow_test), ("position", position[train], position[test]),
                                      ("tag", tags[train], tags[test])):
            model = LogisticRegression(max_iter=2000).fit(x_train, y[train])
            scores[name].append(average_precision_score(y[test], model.predict_proba(x_test)[:, 1]))
    bow, pos, tag = (float(np.mean(scores[k])) for k in ("bow", "position", "tag"))
    assert bow - pos > 0.2, scores
    assert bow - tag > 0.2, scores
    assert bow < 0.9, scores  # learnable, not trivially perfect


def test_a_stale_embedded_dataset_is_regenerated_not_reused(tmp_path):
    from ta_platform.rollouts.generator import ensure_dataset, read_manifest

    target = tmp_path / "embedded"
    ensure_dataset(target, seed=0, n_problems=3)
    first = read_manifest(target)
    ensure_dataset(target, seed=1, n_problems=3)
    second = read_manifest(target)
    assert (first["seed"], second["seed"]) == (0, 1)
    assert first["traces"] != second["traces"]
    assert [p.name for p in tmp_path.iterdir()] == ["embedded"], "no stale copies left behind"


def test_problem_statements_are_distinct_even_when_a_family_is_used_up():
    """nested_expression has 12 statements; 384 problems need more of that slot than it has."""
    from ta_platform.rollouts.synthetic_problems import make_problems

    for n in (24, 96, 384):
        problems = make_problems(0, n)
        assert len({p.problem_json()["problem"] for p in problems}) == n == len({p.problem_id for p in problems})
    assert [p.problem_json() for p in make_problems(0, 24)] == [p.problem_json() for p in make_problems(0, 24)]
