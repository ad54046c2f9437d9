"""What a run page's viewer is sent: every output line exactly once."""
from __future__ import annotations

import pytest

from orchestration.engine.output import _append_chunk
from orchestration.engine.scheduler import start_run
from orchestration.live import RunView, attach_output
from orchestration.models import TaskRun
from tests.conftest import make_plan

pytestmark = pytest.mark.django_db

PLAN = "name: p\nparallel_execution:\n  tasks:\n    - {id: t, worker: shell, command: [python, -V]}\n"


@pytest.fixture
def task_run():
    return start_run(make_plan(PLAN)).task_runs.get()


def test_output_written_after_a_task_run_was_loaded_is_left_for_the_next_update(task_run):
    _append_chunk(task_run.pk, 1, "alpha-line\n")
    loaded = TaskRun.objects.get(pk=task_run.pk)
    _append_chunk(task_run.pk, 1, "beta-line\n")  # arrives while the page is being rendered
    attach_output([loaded])
    assert loaded.shown_output == "alpha-line\n"


def test_a_viewer_gets_each_line_once_across_snapshot_and_updates(task_run):
    _append_chunk(task_run.pk, 1, "alpha-line\n")
    view = RunView(task_run.run_id)
    snapshot = view.snapshot()
    _append_chunk(task_run.pk, 1, "beta-line\n")
    first, second = view.update(), view.update()
    assert snapshot.count("alpha-line") == 1 and "beta-line" not in snapshot
    assert first.count("beta-line") == 1 and "alpha-line" not in first
    assert second == ""
