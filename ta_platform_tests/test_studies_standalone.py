"""Every study stands alone: ``ta-platform materialize --study NAME`` from an EMPTY storage builds what the
study reads (its ``needs`` stages run first: the OOD study after the preference study, the function-tag
study after the sentence labels and activations), every stage's run succeeds, and the study's gate passes
with no check missing. One random-weight model at one layer (the tiny registry): CI cost, every study.

The static half (each study's stages build every dependency of its assets, for every study including
ones added later) is ``test_definitions_snapshot.py::test_every_study_builds_what_it_reads``.
"""

from __future__ import annotations

import pytest

from ta_platform_tests.e2e import ONE_TINY_MODEL_REGISTRY, project_env, run_cli
from ta_platform_tests.study_runs import job_statuses, study_gate

pytestmark = pytest.mark.slow

# every --study, in the order of the main job; seeds kept to one where a study has a seed stage
STUDIES = {"anchors": ["--seeds", "0...0"], "preferences": [], "backtracking": ["--seeds", "0...0"],
           "needle": ["--seeds", "0...0"], "ood": [], "function_tags": []}


def test_the_list_is_every_study():
    from ta_platform.definitions import STUDY_STAGES

    assert set(STUDY_STAGES) == set(STUDIES)


@pytest.mark.parametrize("study", list(STUDIES))
def test_study_runs_alone_from_an_empty_storage(study, tmp_path):
    from ta_platform.definitions import STUDY_STAGES

    (tmp_path / "models.toml").write_text(ONE_TINY_MODEL_REGISTRY)
    storage = tmp_path / "storage"
    env = project_env(storage, TA_DATA_SOURCE="embedded", TA_MODEL_REGISTRY=str(tmp_path / "models.toml"))
    done = run_cli(["ta-platform", "materialize", "--study", study, *STUDIES[study]], env, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert job_statuses(storage) == {stage.job_name: "SUCCESS" for stage in STUDY_STAGES[study]}
    gate = study_gate(env, study)
    assert gate["passed"] and not gate["missing"] and not gate["failing"], gate
    assert (storage / "reports" / "index.html").exists()
