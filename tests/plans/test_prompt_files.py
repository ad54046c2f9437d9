"""A task's prompt_file is read only from the prompt library or the prompts directory: never the
data directory, a .git directory, or anything else on the server."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from orchestration.engine.scheduler import start_run
from orchestration.models import Plan, PromptTemplate
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_plan
from tests.conftest import make_plan, run_to_end, store_unchecked

PASSWORD = "admin-password-7f3a9c"


@pytest.fixture
def prompts_dir(settings, tmp_path, data_dir):
    """A prompts directory with one prompt, a link to the data directory (holding the admin
    password), a link out of it, and a .git directory; the checkout's own var/ holds nothing here."""
    root = tmp_path / "prompts"
    (root / "team").mkdir(parents=True)
    (root / "team" / "style.md").write_text("Write tests first.")
    (data_dir / "admin-password.txt").write_text(PASSWORD)
    (root / "data").symlink_to(data_dir)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.md").write_text(PASSWORD)
    (root / "out").symlink_to(tmp_path / "elsewhere")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(f"[remote]\n\turl = https://ada:{PASSWORD}@example.com/r.git\n")
    settings.MAGICBOX_PROMPTS_DIR = str(root)
    return root


def plan_text(prompt_file: str) -> str:
    return yaml.safe_dump({"name": "p", "parallel_execution": {"tasks": [
        {"id": "a", "worker": "claude", "description": "d"},
        {"id": "b", "worker": "claude", "description": "d", "prompt_file": prompt_file}]}})


REFUSED = [
    "var/admin-password.txt",                # the checkout's data directory
    "var/magicbox.sqlite3-wal",
    ".git/config",
    "prompts/.git/config",                   # a .git inside the prompts directory
    "prompts/data/admin-password.txt",       # a link into the data directory
    "prompts/out/notes.md",                  # a link out of the prompts directory
    "/etc/passwd",
    "prompts/../var/admin-password.txt",
]


@pytest.mark.django_db
@pytest.mark.parametrize("prompt_file", REFUSED)
def test_a_prompt_file_outside_the_library_and_prompts_directory_is_refused_when_uploaded(logged_in_client, prompts_dir, prompt_file):
    text = plan_text(prompt_file)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "prompt_file" in row)
    response = logged_in_client.post("/plans/import/", {"file": SimpleUploadedFile("p.yaml", text.encode())})
    page = response.content.decode()
    assert response.status_code == 400 and not Plan.objects.exists()
    assert f"p.yaml:{line}:" in page and "parallel_execution.tasks[1].prompt_file:" in page
    assert "library" in page and PASSWORD not in page


@pytest.mark.django_db
def test_the_data_directory_is_refused_even_when_the_prompts_directory_holds_it(settings, tmp_path, data_dir):
    (data_dir / "admin-password.txt").write_text(PASSWORD)
    settings.MAGICBOX_PROMPTS_DIR = str(data_dir.parent)  # an administrator's unlucky choice
    with pytest.raises(PlanInvalid, match=r"tasks\[1\]\.prompt_file: 'prompts/data/admin-password.txt' leads out"):
        load_plan(plan_text("prompts/data/admin-password.txt"))


@pytest.mark.django_db
@pytest.mark.parametrize("prompt_file", ["prompts/team/style.md", "prompts/team/not-written-yet.md", "team/library-only.md"])
def test_prompts_in_the_directory_or_the_library_are_accepted(prompts_dir, prompt_file):
    PromptTemplate.objects.create(path="team/library-only.md", body="From the library.")
    assert load_plan(plan_text(prompt_file)).tasks[1].prompt_file == prompt_file


@pytest.mark.django_db
def test_the_example_plans_still_load_for_an_author():
    examples = Path(settings.BASE_DIR) / "examples"
    for file in sorted(examples.glob("*.yaml")):
        spec = load_plan(file.read_text(), file.name, examples, any_repository=False)
        assert spec.tasks, file


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("prompt_file, configured", [
    ("prompts/data/admin-password.txt", "its parent"),  # the data directory, under the configured directory
    ("prompts/out/notes.md", "itself"),
    ("var/admin-password.txt", "itself"),
])
async def test_a_stored_plan_naming_such_a_file_runs_without_it(settings, prompts_dir, prompt_file, configured):
    settings.MAGICBOX_PROMPTS_DIR = str(prompts_dir.parent if configured == "its parent" else prompts_dir)
    doc = {"name": "old", "parallel_execution": {"tasks": [
        {"id": "t", "worker": "shell", "command": ["python", "-c", "import os; print(len(os.environ['MAGICBOX_PROMPT']))"],
         "prompt_file": prompt_file}]}}
    plan = await sync_to_async(store_unchecked)(doc)
    run = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    task = await sync_to_async(run.task_runs.get)()
    output = await sync_to_async(task.output_text)()
    assert PASSWORD not in task.prompt and PASSWORD not in output
    assert f"prompt_file: {prompt_file!r}" in output and "running without it" in output


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_prompt_in_the_prompts_directory_reaches_the_task(prompts_dir):
    plan = await sync_to_async(make_plan)(yaml.safe_dump({"name": "ok", "parallel_execution": {"tasks": [
        {"id": "t", "worker": "shell", "command": ["python", "-V"], "prompt_file": "prompts/team/style.md"}]}}))
    run = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    task = await sync_to_async(run.task_runs.get)()
    assert run.state == "succeeded" and task.prompt.startswith("Write tests first.")
