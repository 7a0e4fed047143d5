"""Every study stands alone: ``ta-platform materialize --study NAME`` from an EMPTY storage builds what the
study reads (its ``needs`` stages run first: the OOD study after the preference study, the function-tag
study after the sentence labels and activations), every stage's run succeeds, and the study's gate passes
with no check missing. One random-weight model at one layer (the tiny registry): CI cost, every study.

The static half (each study's stages build every dependency of its assets, for every study including
ones added later) is ``test_definitions_snapshot.py::test_every_study_builds_what_it_reads``.
"""

from __future__ import annotations

import pytest

from ta_platform_tests.study_runs import job_statuses, study_alone, study_gate

pytestmark = pytest.mark.slow

# every --study, in the order of the main job
STUDIES = ["anchors", "preferences", "backtracking", "needle", "ood", "function_tags"]


def test_the_list_is_every_study():
    from ta_platform.definitions import STUDY_STAGES

    assert set(STUDY_STAGES) == set(STUDIES)


# In CI: the studies no other test runs alone from an empty storage. The others are run alone elsewhere in
# CI (anchors: test_e2e_main_job; backtracking: test_backtracking_embedded; needle: test_needle_study;
# function_tags: test_function_tags_study) and here in the release battery (TA_RELEASE_TESTS=1).
ALSO_ALONE_ELSEWHERE = {"anchors", "backtracking", "needle", "function_tags"}


@pytest.mark.parametrize("study", [pytest.param(s, marks=pytest.mark.release) if s in ALSO_ALONE_ELSEWHERE else s
                                   for s in STUDIES])
def test_study_runs_alone_from_an_empty_storage(study, tmp_path_factory):
    from ta_platform.definitions import STUDY_STAGES

    run = study_alone(tmp_path_factory, study)
    assert run.result.returncode == 0, run.result.stdout[-4000:] + run.result.stderr[-4000:]
    assert job_statuses(run.storage) == {stage.job_name: "SUCCESS" for stage in STUDY_STAGES[study]}
    gate = study_gate(run.env, study)
    assert gate["passed"] and not gate["missing"] and not gate["failing"], gate
    assert (run.storage / "reports" / "index.html").exists()
