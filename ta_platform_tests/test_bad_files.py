"""Bad input files for every study through the real CLI: one clear error, exit 1, no traceback, nothing written.

Each case is a malformed file of one kind (the backtracking study's annotated chains JSON, the needle
JSONL, the model registry TOML, the OOD prompt set TOML, preference outcomes) built here in a
temporary folder and given to ``ta-platform check-data --kind KIND FILE`` in a subprocess: the same
parser the pipeline uses (``cli/check_file.py``). The output must name the file, the record (line,
chain id, model key, prompt) and the problem. A whole-file fault (not UTF-8, empty, a runaway line,
not JSON, an id given twice) refuses the file; a record-level fault of the chains or needle file is
listed (the study records it in ``faults`` and skips that record). The slow tests at the end plant
one bad file per study under ``ta-platform materialize --study`` and check that the run stops at once,
names the file and leaves no artifact of the stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ta_platform_tests.e2e import REPO, project_env, run_cli

pytestmark = pytest.mark.fault

HUGE = 50 * (1 << 20)  # a 50 MB line: a runaway field, or a binary file under a text name

GOOD_CHAIN = {"task_id": "t1", "problem": "p",
              "reasoning_chain": "\nOkay, let me think. So 2 + 2 = 4.\n\nWait, that's wrong... it is 5? No, 4.",
              "annotated_chain": '["initializing"] Okay, let me think. ["end-section"] ["deduction"] So 2+2 = 4. '
                                 '["end-section"]\n\n["backtracking"] Wait, that\'s wrong it is 5? ["end-section"] '
                                 '["deduction"] No, 4. ["end-section"]'}


def chains(*records) -> bytes:
    return json.dumps(list(records), indent=1).encode()


def chain(**changes) -> dict:
    record = {**GOOD_CHAIN, "task_id": "t2", **changes}
    return {k: v for k, v in record.items() if v is not ...}


def needle_line(**changes) -> str:
    record = {"doc_id": "d1", "text": "Two plus two is four. The vault code is 7.", "needle_spans": [[22, 42]],
              "has_needle": True, "split": "train", **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def needle(*lines: str) -> bytes:
    return ("\n".join([needle_line(), *lines]) + "\n").encode()


REGISTRY = '[models.m]\nsource = "tiny"\narch = "llama"\nnum_layers = 8\nlayers = [0.5]\ntrace_model = "a"\n'
REGISTRY_2 = '\n[models.m2]\nsource = "tiny"\narch = "qwen2"\nnum_layers = 4\nlayers = [1]\ntrace_model = "a"\n'

PROMPT = '[[prompts]]\nid = "{id}"\nexperiment = "induce"\nsystem_prompt = "{text}"\ntargets = {{ {targets} }}\n\n'


def prompts(*entries: str) -> bytes:
    first = PROMPT.format(id="hate_math", text="You hate mathematics.", targets="mathematics = -1")
    return (first + "".join(entries)).encode()


def prompt(**fields) -> str:
    values = {"id": "love_cooking", "text": "You love cooking.", "targets": "cooking = 1", **fields}
    return PROMPT.format(**values)


HUGE_CHAIN = (b' {"task_id": "t1", "problem": "p", "reasoning_chain": "', b'"}')
HUGE_DOC = (b'{"doc_id": "d2", "text": "', b'"}')


def huge_chain(path: Path) -> None:
    path.write_bytes(b"[\n" + HUGE_CHAIN[0] + b"a" * HUGE + HUGE_CHAIN[1] + b"\n]\n")


def huge_needle(path: Path) -> None:
    path.write_bytes(needle() + HUGE_DOC[0] + b"a" * HUGE + HUGE_DOC[1] + b"\n")


def huge_toml(head: bytes):
    def write(path: Path) -> None:
        path.write_bytes(head + b"# " + b"x" * HUGE + b"\n")
    return write


# name: (kind, file suffix, content (bytes) or writer, the record named, the problem named)
CASES = {
    # ---- annotated chains JSON (backtracking study, TA_CHAINS_SOURCE) -- whole-file faults
    "chains_not_json": ("chains", ".json", b'[\n {"task_id": "t1",\n  oops}\n]', "line 3 column 3",
                        "not valid JSON"),
    "chains_empty_file": ("chains", ".json", b"", "(0 bytes)", "chains file is empty"),
    "chains_empty_list": ("chains", ".json", b"[]\n", "list of chain records", "is empty"),
    "chains_not_a_list": ("chains", ".json", json.dumps(GOOD_CHAIN).encode(), "JSON list of chain records",
                          "got dict"),
    "chains_non_utf8": ("chains", ".json", chains(GOOD_CHAIN).replace(b'"p"', b'"caf\xe9"'), "line 4",
                        "not UTF-8 (byte 0xe9"),
    "chains_huge_line": ("chains", ".json", huge_chain, "line 2", f"is {HUGE + len(b''.join(HUGE_CHAIN))} bytes long"),
    "chains_duplicated_id": ("chains", ".json", chains(GOOD_CHAIN, chain(), chain()), "record 2 (chain 't2')",
                             "duplicate task_id, also record 1"),
    # -- record-level faults: listed, the study skips and records them
    "chains_missing_key": ("chains", ".json", chains(GOOD_CHAIN, chain(annotated_chain=...)), "chain 't2'",
                           "record lacks key(s) ['annotated_chain']"),
    "chains_wrong_type": ("chains", ".json", chains(GOOD_CHAIN, chain(problem=["p"])), "chain 't2'",
                          "wrong type: problem is ['p'] (list); expected strings"),
    "chains_nan": ("chains", ".json", chains(GOOD_CHAIN, chain()).replace(b'"problem": "p"', b'"problem": NaN', 2)
                   .replace(b'"problem": NaN', b'"problem": "p"', 1), "chain 't2'", "problem is nan (float)"),
    "chains_not_an_object": ("chains", ".json", chains(GOOD_CHAIN, 7), "chain 'record[1]'", "record is a int"),
    "chains_unknown_label": ("chains", ".json", chains(GOOD_CHAIN, chain(
        annotated_chain='["pondering"] Okay, let me think. ["end-section"]')), "chain 't2'", "unknown label 'pondering'"),
    "chains_unbalanced_tags": ("chains", ".json", chains(GOOD_CHAIN, chain(
        annotated_chain='["deduction"] Okay, let me think.')), "chain 't2'", "never closed"),
    # ---- needle JSONL (TA_NEEDLE_SOURCE) -- whole-file faults
    "needle_empty_file": ("needle", ".jsonl", b"", "(0 bytes)", "needle JSONL file is empty"),
    "needle_blank_lines": ("needle", ".jsonl", b"\n \n\n", "(4 bytes)", "needle JSONL file is empty"),
    "needle_non_utf8": ("needle", ".jsonl", needle(needle_line(doc_id="d2", text="caf\u00e9").replace("\\u00e9", "\u00e9"))
                        .replace("caf\u00e9".encode(), b"caf\xe9"), "line 2", "not UTF-8 (byte 0xe9 at column 30)"),
    "needle_huge_line": ("needle", ".jsonl", huge_needle, "line 2", f"is {HUGE + len(b''.join(HUGE_DOC))} bytes long"),
    "needle_duplicated_id": ("needle", ".jsonl", needle(needle_line()), "line 2 (doc d1)",
                             "duplicate doc_id, first at line 1"),
    # -- record-level faults (line by line into `faults`)
    "needle_missing_key": ("needle", ".jsonl", needle(needle_line(doc_id="d2", split=...)), "line 2",
                           "missing key(s) ['split']"),
    "needle_wrong_type": ("needle", ".jsonl", needle(needle_line(doc_id="d2", has_needle="yes")), "line 2 (doc d2)",
                          "has_needle must be true or false, got 'yes'"),
    "needle_nan": ("needle", ".jsonl", needle(needle_line(doc_id="d2").replace("[[22, 42]]", "[[NaN, 42]]")),
                   "line 2", "NaN is not a JSON value"),
    "needle_not_json": ("needle", ".jsonl", needle('{"doc_id": "d2", '), "line 2", "not valid JSON"),
    "needle_span_outside_text": ("needle", ".jsonl", needle(needle_line(doc_id="d2", needle_spans=[[22, 99]])),
                                 "line 2 (doc d2)", "needle span [22, 99) is empty or outside the text (length 42)"),
    "needle_unknown_split": ("needle", ".jsonl", needle(needle_line(doc_id="d2", split="dev")), "line 2 (doc d2)",
                             "split must be one of"),
    # ---- model registry TOML (TA_MODEL_REGISTRY): every fault refuses the file
    "registry_empty_file": ("registry", ".toml", b"", "(0 bytes)", "model registry is empty"),
    "registry_non_utf8": ("registry", ".toml", (REGISTRY + REGISTRY_2).encode().replace(b'"qwen2"', b'"qw\xe9n2"'),
                          "line 10", "not UTF-8 (byte 0xe9 at column 11)"),
    "registry_huge_line": ("registry", ".toml", huge_toml(REGISTRY.encode()), "line 7", f"is {HUGE + 2} bytes long"),
    "registry_duplicated_key": ("registry", ".toml", (REGISTRY + REGISTRY.replace("[models.m]", "\n[models.m]")).encode(),
                                "('models', 'm')", "twice (at line 8"),
    "registry_missing_key": ("registry", ".toml", (REGISTRY + REGISTRY_2.replace("num_layers = 4\n", "")).encode(),
                             "model 'm2'", "missing key(s) ['num_layers']"),
    "registry_wrong_type": ("registry", ".toml", (REGISTRY + REGISTRY_2.replace("layers = [1]", 'layers = "1"')).encode(),
                            "model 'm2'", "layers must be a non-empty list of indices or fractions, got '1'"),
    "registry_wrong_type_arch": ("registry", ".toml", (REGISTRY + REGISTRY_2.replace('"qwen2"', "2")).encode(),
                                 "model 'm2'", "arch must be str, got int 2"),
    "registry_nan_layers": ("registry", ".toml", (REGISTRY + REGISTRY_2.replace("[1]", "[nan]")).encode(), "model 'm2'",
                            "layer fraction nan is outside [0, 1]"),
    "registry_nan_num_layers": ("registry", ".toml", (REGISTRY + REGISTRY_2.replace("= 4", "= nan")).encode(),
                                "model 'm2'", "num_layers must be a positive integer"),
    "registry_unknown_source": ("registry", ".toml", (REGISTRY + REGISTRY_2.replace('"tiny"', '"s3"')).encode(),
                                "model 'm2'", "source must be one of ('tiny', 'hub', 'local', 'package_gguf'), got 's3'"),
    "registry_layer_out_of_range": ("registry", ".toml", (REGISTRY + REGISTRY_2.replace("[1]", "[4]")).encode(),
                                    "model 'm2'", "unknown layer 4 (the model has 4 layers: 0..3)"),
    "registry_entry_not_a_table": ("registry", ".toml", b'[models]\nm4 = 5\n' + REGISTRY.encode(),
                                   "model 'm4'", "expected a table of settings"),
    "registry_unknown_profile_entry": ("registry", ".toml", b'default_profile = "x"\n[profiles.y.models.m]\nsource = 1\n',
                                       "unknown profile 'x'", "known: ['y']"),
    # ---- OOD prompt set TOML: every fault refuses the set
    "prompts_empty_file": ("prompts", ".toml", b"", "(0 bytes)", "prompt set file is empty"),
    "prompts_non_utf8": ("prompts", ".toml", prompts(prompt(text="You love caf\u00e9s.")).replace(
        "caf\u00e9".encode(), b"caf\xe9"), "line 10", "not UTF-8 (byte 0xe9 at column 30)"),
    "prompts_huge_line": ("prompts", ".toml", huge_toml(prompts()), "line 7", f"is {HUGE + 2} bytes long"),
    "prompts_duplicated_id": ("prompts", ".toml", prompts(prompt(id="hate_math")), "prompt 2 (hate_math)",
                              "duplicate id 'hate_math' (first at prompt 1)"),
    "prompts_duplicated_key": ("prompts", ".toml", prompts().replace(b'id = "hate_math"\n', b'id = "a"\nid = "b"\n'),
                               "line 3", "Cannot overwrite a value"),
    "prompts_missing_key": ("prompts", ".toml", prompts(prompt().replace('experiment = "induce"\n', "")),
                            "prompt 2 (love_cooking)", "missing key(s) ['experiment']"),
    "prompts_wrong_type_id": ("prompts", ".toml", prompts(prompt().replace('id = "love_cooking"', "id = 5")),
                              "prompt 2 (5)", "id must be a string, got int"),
    "prompts_wrong_type_text": ("prompts", ".toml", prompts(prompt().replace('"You love cooking."', "3")),
                                "prompt 2 (love_cooking)", "system_prompt must be a string, got int 3"),
    "prompts_nan_direction": ("prompts", ".toml", prompts(prompt(targets="cooking = nan")), "prompt 2 (love_cooking)",
                              "target directions must be +1 or -1, got {'cooking': nan}"),
    "prompts_bool_direction": ("prompts", ".toml", prompts(prompt(targets="cooking = true")), "prompt 2 (love_cooking)",
                               "target directions must be +1 or -1, got {'cooking': True}"),
    "prompts_unknown_topic": ("prompts", ".toml", prompts(prompt(targets="cheese = 1")), "prompt 2 (love_cooking)",
                              "unknown target topic(s) ['cheese']"),
    "prompts_entry_not_a_table": ("prompts", ".toml", b'prompts = [1, 2]\n', "prompt 1", "expected a [[prompts]] table"),
    # ---- preference outcomes (the full set is test_preferences_outcomes_malformed.py): the kind reaches that parser
    "outcomes_non_utf8": ("outcomes", ".csv", b"task_a,task_b,winner\nt1,t2,a\ncaf\xe9,t2,b\n", "line 3 (row 2)",
                          "not UTF-8 (byte 0xe9 at column 4)"),
    "outcomes_nan_id": ("outcomes", ".csv", b"task_a,task_b,winner\nt1,t2,a\nt2,,b\n", "row 2", "task_b is missing"),
}


def check_data(args: list[str], storage: Path) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, run from the checkout under test, with a private storage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TA_", "DAGSTER_"))}
    env["TA_STORAGE"] = str(storage)
    return subprocess.run([sys.executable, "-m", "ta_platform.cli.main", "check-data", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_exits_1_naming_file_record_and_problem(tmp_path, case):
    kind, suffix, content, record, problem = CASES[case]
    path = tmp_path / "in" / f"{case}{suffix}"
    path.parent.mkdir()
    path.write_bytes(content) if isinstance(content, bytes) else content(path)
    storage = tmp_path / "storage"
    result = check_data(["--kind", kind, str(path)], storage)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    # one line names all three: file, record, problem
    lines = [line for line in output.splitlines() if str(path) in line and record in line and problem in line]
    assert lines, f"no line names {path}, {record!r} and {problem!r}:\n{output[-3000:]}"
    assert len(output) < 20_000  # the runaway line is never echoed back
    assert files_under(storage) == [] and [p.name for p in path.parent.iterdir()] == [path.name]  # nothing written


@pytest.mark.parametrize("kind, make", [
    ("chains", lambda p: p.write_bytes(chains(GOOD_CHAIN, chain()))),
    ("needle", lambda p: p.write_bytes(needle(needle_line(doc_id="d0", needle_spans=[], has_needle=False)))),
    ("registry", lambda p: p.write_text(REGISTRY + REGISTRY_2)),
    ("registry", lambda p: p.write_bytes((REPO / "ta_platform" / "extraction" / "models.toml").read_bytes())),
    ("prompts", lambda p: p.write_bytes(prompts(prompt()))),
    ("prompts", lambda p: p.write_bytes((REPO / "ta_platform/preferences/prompt_sets/ood_default.toml").read_bytes())),
    ("outcomes", lambda p: p.write_text("task_a,task_b,winner\nt1,t2,a\nt2,t3,b\n")),
])
def test_the_well_formed_file_passes(tmp_path, kind, make):
    """The control: the same checks accept sound files (the packaged registry and prompt set included)."""
    path = tmp_path / f"good.{'csv' if kind == 'outcomes' else 'txt'}"
    make(path)
    result = check_data(["--kind", kind, str(path)], tmp_path / "storage")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "records pass" in result.stderr and "Traceback" not in result.stderr


REAL_CHAINS = REPO.parent / "shared" / "realdata" / "backtracking" / "all_annotated_chains.json"


@pytest.mark.skipif(not REAL_CHAINS.is_file(), reason=f"real annotated chains not found at {REAL_CHAINS}")
def test_real_chains_file_lists_each_skipped_chain(tmp_path):
    """The published file has chains the study skips (unknown label, unalignable): each is named, by id."""
    result = check_data([str(REAL_CHAINS)], tmp_path / "storage")  # kind from the .json extension
    assert result.returncode == 1 and "Traceback" not in result.stderr
    listed = [line for line in result.stdout.splitlines() if line.startswith(f"{REAL_CHAINS}: chain '")]
    assert listed and "of 210 records pass" in result.stderr
    assert any("unknown label 'substitution'" in line for line in listed)


# ---------------------------------------------------------------- one bad file per study, end to end

REGISTRY_ONE_TINY = '[models.tiny-m]\nsource = "tiny"\narch = "qwen2"\nnum_layers = 2\nlayers = [1]\n' \
                    'trace_model = "deepseek-r1-distill-qwen-14b"\n'

E2E = {
    # study, the variable, file name, content, stage folder that must stay empty
    "registry": ("backtracking", "TA_MODEL_REGISTRY", "models.toml",
                 (REGISTRY_ONE_TINY + '[models.tiny-m2]\nsource = "s3"\nnum_layers = 2\n').encode(), "backtracking"),
    "chains": ("backtracking", "TA_CHAINS_SOURCE", "chains.json", b"caf\xe9 au lait: Latin-1 text, not JSON\n",
               "backtracking"),
    "needle": ("needle", "TA_NEEDLE_SOURCE", "needle.jsonl", needle().replace(b"Two", b"T\xefwo"), "needle"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(E2E))
def test_materialize_refuses_the_bad_file_and_writes_nothing(tmp_path, case):
    study, variable, name, content, folder = E2E[case]
    bad = tmp_path / name
    bad.write_bytes(content)
    registry = tmp_path / "one_tiny.toml"
    registry.write_text(REGISTRY_ONE_TINY)
    storage = tmp_path / "storage"
    env = project_env(storage, **{"TA_MODEL_PROFILE": "tiny", "TA_DATA_SOURCE": "embedded",
                                  "TA_MODEL_REGISTRY": str(registry), variable: str(bad)})
    result = run_cli(["ta-platform", "materialize", "--study", study, "--seeds", "0...0"], env, timeout=1200)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert str(bad) in result.stdout + result.stderr, result.stdout[-3000:] + result.stderr[-3000:]
    left = [f for f in files_under(storage) if f.startswith(folder + "/") or ".tmp" in f]
    assert left == [], left  # no partial artifact of the stage (no dataset, no chains table, no temp file)
    assert not any(storage.rglob("*.duckdb")) or _no_rows_of(storage, folder)


def _no_rows_of(storage: Path, study: str) -> bool:
    """No table of the study in the metadata store (a failed first stage leaves none)."""
    import duckdb

    for db in storage.rglob("*.duckdb"):
        with duckdb.connect(str(db), read_only=True) as con:
            tables = [row[0] for row in con.execute("select table_name from information_schema.tables").fetchall()]
            if any(t.startswith(study) for t in tables):
                return False
    return True
