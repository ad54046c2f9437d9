"""Starting runs from the browser and finding them afterwards in the history."""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync

from orchestration.models import Run
from tests.conftest import make_plan, run_to_end, streamed_body

PLAN = """
name: Checks
parallel_execution:
  tasks:
    - {id: lint, worker: shell, command: [python, -c, "print('lint ok')"]}
    - {id: test, worker: shell, command: [python, -c, "import sys; print('1 failed'); sys.exit(1)"]}
"""


@pytest.mark.django_db
def test_starting_a_run_records_who_started_it_and_opens_its_page(logged_in_client, user):
    plan = make_plan(PLAN)
    response = logged_in_client.post(f"/plans/{plan.pk}/start/", {"map_shell": "shell"})
    run = Run.objects.get()
    assert response.status_code == 302 and response.url == f"/runs/{run.pk}/"
    assert run.started_by == user and run.revision == plan.latest_revision
    page = logged_in_client.get(response.url).content.decode()
    assert f'ws-connect="/ws/runs/{run.pk}/"' in page and 'data-task="lint"' in page


AGENT_PLAN = """
name: Agents
parallel_execution:
  tasks:
    - {id: ui, worker: gemini, description: Build the page}
    - {id: api, worker: codex, description: Build the API}
"""


@pytest.mark.django_db
def test_a_run_can_map_an_agent_worker_to_another(logged_in_client):
    plan = make_plan(AGENT_PLAN)
    logged_in_client.post(f"/plans/{plan.pk}/start/", {"map_gemini": "claude", "map_codex": "codex"})
    run = Run.objects.get()
    assert run.worker_map == {"gemini": "claude"}
    assert dict(run.task_runs.values_list("task_id", "worker")) == {"ui": "claude", "api": "codex"}


@pytest.mark.django_db
def test_the_start_form_says_why_a_worker_cannot_run_here(logged_in_client, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    plan = make_plan(AGENT_PLAN)
    page = logged_in_client.get(f"/plans/{plan.pk}/").content.decode()
    assert 'id="unavailable-warning"' in page and "needs GEMINI_API_KEY" in page


@pytest.mark.django_db
def test_agent_tasks_cannot_be_mapped_to_the_shell_worker(logged_in_client):
    plan = make_plan(AGENT_PLAN)
    page = logged_in_client.get(f"/plans/{plan.pk}/").content.decode()
    assert 'name="map_gemini"' in page and '<option value="shell"' not in page
    response = logged_in_client.post(f"/plans/{plan.pk}/start/", {"map_gemini": "shell", "map_codex": "codex"})
    assert response.status_code == 302 and not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_history_lists_runs_newest_first_and_keeps_every_output(logged_in_client, user):
    from orchestration.engine.scheduler import start_run

    plan = make_plan(PLAN)
    first = start_run(plan, user)
    asyncio.run(run_to_end(first.pk))
    second = start_run(plan, user)
    asyncio.run(run_to_end(second.pk))

    listing = logged_in_client.get("/runs/").content.decode()
    assert listing.index(f"#{second.pk}<") < listing.index(f"#{first.pk}<")
    assert "Checks" in listing and "ada" in listing and "Failed" in listing

    page = logged_in_client.get(f"/runs/{first.pk}/").content.decode()  # opens on the failed task
    assert "1 failed" in page and "lint ok" not in page
    assert "exited with code 1" in page and "1 of 2 tasks did not succeed: test failed" in page
    assert "lint ok" in logged_in_client.get(f"/runs/{first.pk}/?task=lint").content.decode()

    test_run = first.task_runs.get(task_id="test")
    download = logged_in_client.get(f"/runs/{first.pk}/tasks/{test_run.pk}/output.txt")
    assert b"1 failed" in async_to_sync(streamed_body)(download)


@pytest.mark.django_db
def test_a_forged_worker_mapping_is_refused_in_plain_words(logged_in_client):
    plan = make_plan(AGENT_PLAN)
    response = logged_in_client.post(f"/plans/{plan.pk}/start/", {"map_gemini": "nosuch", "map_codex": "codex"}, follow=True)
    page = response.content.decode()
    assert "The run was not started. Run gemini tasks with: Select a valid choice." in page
    assert "&lt;ul" not in page and not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_run_page_shows_each_check_with_its_verdict_and_evidence(logged_in_client, user):
    from orchestration.engine.scheduler import start_run

    plan = make_plan("""
name: Checked
parallel_execution:
  tasks:
    - {id: build, worker: shell, command: [python, -c, "print('built')"]}
  completion_criteria:
    - All tasks completed
    - {name: smoke test, command: [python, -c, "import sys; print('smoke: 500 on /login'); sys.exit(1)"]}
""")
    run = start_run(plan, user)
    asyncio.run(run_to_end(run.pk))
    page = logged_in_client.get(f"/runs/{run.pk}/").content.decode()
    assert '<section id="verdicts"' in page and 'data-state="failed"' in page and "smoke test" in page
    assert "smoke: 500 on /login" in page and "1 check(s) failed: smoke test (exited with code 1)" in page


@pytest.mark.django_db
def test_an_operator_cancels_a_run_from_its_page(logged_in_client, user):
    from orchestration.engine.scheduler import start_run

    run = start_run(make_plan(PLAN), user)
    page = logged_in_client.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="cancel-run"' in page
    logged_in_client.post(f"/runs/{run.pk}/cancel/")
    run.refresh_from_db()
    assert run.state == "cancelled" and set(run.task_runs.values_list("state", flat=True)) == {"cancelled"}
    assert run.task_runs.first().state_reason == "cancelled by ada"
    assert 'id="cancel-run"' not in logged_in_client.get(f"/runs/{run.pk}/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_rerunning_a_failed_run_redoes_only_the_failed_tasks_and_keeps_the_rest(logged_in_client, user, tmp_path):
    from orchestration.engine.scheduler import start_run

    flag = tmp_path / "fixed"
    plan = make_plan(f"""
name: Flaky
parallel_execution:
  tasks:
    - {{id: lint, worker: shell, command: [python, -c, "print('lint ok')"]}}
    - {{id: test, worker: shell, command: [python, -c, "import os, sys; print('tests'); sys.exit(0 if os.path.exists({str(flag)!r}) else 1)"]}}
    - {{id: report, worker: shell, command: [python, -c, "print('report')"], depends_on: [test]}}
""")
    first = start_run(plan, user)
    asyncio.run(run_to_end(first.pk))
    first.refresh_from_db()
    assert first.state == "failed" and 'id="rerun-failed"' in logged_in_client.get(f"/runs/{first.pk}/").content.decode()
    flag.touch()
    response = logged_in_client.post(f"/runs/{first.pk}/rerun/")
    second = Run.objects.exclude(pk=first.pk).get()
    assert response.url == f"/runs/{second.pk}/" and second.rerun_of_id == first.pk
    lint = second.task_runs.get(task_id="lint")
    assert lint.state == "succeeded" and lint.state_reason == f"kept from run #{first.pk}" and "lint ok" in lint.output_text()
    asyncio.run(run_to_end(second.pk))
    second.refresh_from_db()
    assert second.state == "succeeded"
    assert dict(second.task_runs.values_list("task_id", "attempt")) == {"lint": 1, "test": 1, "report": 1}
    # Retrying one task redoes it and what waits for it.
    third = logged_in_client.post(f"/runs/{second.pk}/rerun/", {"task": "test"})
    latest = Run.objects.order_by("-pk").first()
    assert dict(latest.task_runs.values_list("task_id", "state")) == {"lint": "succeeded", "test": "queued", "report": "pending"}
    assert third.status_code == 302


@pytest.mark.django_db
def test_a_run_that_has_not_ended_cannot_be_rerun(logged_in_client):
    from orchestration.engine.scheduler import start_run

    run = start_run(make_plan(PLAN))
    response = logged_in_client.post(f"/runs/{run.pk}/rerun/", follow=True)
    assert "is still running: cancel it or wait for it to end" in response.content.decode() or \
        "is still queued: cancel it or wait for it to end" in response.content.decode()
    assert Run.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["on", "off"])
def test_a_run_whose_tasks_ran_without_the_sandbox_says_so_on_its_page(logged_in_client, settings, mode):
    settings.MAGICBOX_SANDBOX = mode
    plan = make_plan(PLAN)
    run = Run.objects.get(pk=logged_in_client.post(f"/plans/{plan.pk}/start/", {"map_shell": "shell"}).url.split("/")[2])
    asyncio.run(run_to_end(run.pk))
    page = logged_in_client.get(f"/runs/{run.pk}/").content.decode()
    assert ('id="run-unsandboxed"' in page) == (mode == "off")
    assert ("WITHOUT a sandbox (MAGICBOX_SANDBOX=off)" in page) == (mode == "off")
