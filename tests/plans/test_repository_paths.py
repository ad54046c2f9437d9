"""Which workspace repositories a plan may name: local paths only under MAGICBOX_REPOSITORY_ROOTS
unless a superuser saves it, never a value git would read as an option, and no answer that tells
an author whether a path outside the roots exists."""
from __future__ import annotations

import re

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile

from orchestration.models import Plan, Run
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_plan
from tests.conftest import store_unchecked
from tests.views.test_plan_editor import BUILD, form

pytestmark = pytest.mark.django_db


def plan_text(repository: str, base: str = "main") -> str:
    return yaml.safe_dump({"name": "ws", "workspace": {"repository": repository, "base": base},
                           "parallel_execution": {"tasks": [{"id": "t", "worker": "shell", "command": ["git", "status"]}]}})


def upload(client, repository: str, base: str = "main"):
    return client.post("/plans/import/", {"file": SimpleUploadedFile("ws.yaml", plan_text(repository, base).encode())})


def repository_error(response) -> str:
    found = re.findall(r"workspace\.repository: ([^<]*)", response.content.decode())
    assert response.status_code == 400 and len(found) == 1, response.content.decode()[-2000:]
    return found[0]


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123"))
    return client


@pytest.fixture
def roots(settings, tmp_path):
    """Repositories may come from tmp_path/allowed only."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    settings.MAGICBOX_REPOSITORY_ROOTS = [str(allowed)]
    return allowed


def test_outside_the_roots_an_author_learns_nothing_about_what_exists(logged_in_client, roots, repo, tmp_path):
    (tmp_path / "plain").mkdir()
    (roots / "escape").symlink_to(repo)
    paths = {"a git repository": str(repo), "a directory": str(tmp_path / "plain"), "nothing": str(tmp_path / "missing"),
             "a link out of the roots": str(roots / "escape"), "a system directory": "/etc"}
    messages = {what: repository_error(upload(logged_in_client, path)).replace(path, "PATH") for what, path in paths.items()}
    assert len(set(messages.values())) == 1, messages
    assert "is not under a directory this server lets plans use repositories from" in messages["nothing"]
    assert "MAGICBOX_REPOSITORY_ROOTS" in messages["nothing"] and not Plan.objects.exists()


def test_under_the_roots_an_author_may_name_a_repository(logged_in_client, roots, repo):
    moved = roots / "repo"
    repo.rename(moved)
    assert upload(logged_in_client, str(moved)).status_code == 302
    assert Plan.objects.get().latest_revision.spec.workspace.repository == str(moved)


def test_a_superuser_may_name_any_path(superuser_client, roots, repo):
    assert upload(superuser_client, str(repo)).status_code == 302


def test_the_data_directory_is_refused_even_under_the_roots(logged_in_client, settings, data_dir):
    settings.MAGICBOX_REPOSITORY_ROOTS = [str(data_dir.parent)]
    (data_dir / "repos" / "private.git").mkdir(parents=True)
    assert "is not under a directory" in repository_error(upload(logged_in_client, str(data_dir / "repos" / "private.git")))


def test_a_file_url_is_a_local_path_too(logged_in_client, roots, repo):
    assert "is not under a directory" in repository_error(upload(logged_in_client, f"file://{repo}"))


def test_the_editor_says_so_beside_the_repository_field(logged_in_client, roots, repo):
    page = logged_in_client.post("/plans/new/", form(tasks=[BUILD], action="validate", repository=str(repo))).content.decode()
    start = page.index('id="err-repository"')
    assert "is not under a directory" in page[start:page.index("</ul>", start)]


@pytest.mark.parametrize("repository", ["--upload-pack=touch /tmp/magicbox-pwned", "-oProxyCommand=x", " -u x://y"])
def test_a_repository_git_would_read_as_an_option_is_refused_even_for_a_superuser(superuser_client, repository):
    assert "starts with &#x27;-&#x27;, which git would read as an option" in repository_error(upload(superuser_client, repository))
    with pytest.raises(PlanInvalid, match=r"ws\.yaml:\d+:\d+: workspace\.repository: .* starts with '-'"):
        load_plan(plan_text(repository), "ws.yaml", any_repository=True)


def test_a_base_git_would_read_as_an_option_is_refused(repo):
    with pytest.raises(PlanInvalid, match=r"workspace\.base: '--output=x' starts with '-'"):
        load_plan(plan_text(str(repo), base="--output=x"), any_repository=True)


def test_a_stored_plan_outside_the_roots_does_not_start_unless_a_superuser_starts_it(client, user, roots, repo, django_user_model):
    plan = store_unchecked(yaml.safe_load(plan_text(str(repo))), user)
    client.force_login(user)
    response = client.post(f"/plans/{plan.pk}/start/", follow=True)
    page = response.content.decode()
    assert "The run was not started: workspace.repository:" in page and "is not under a directory" in page
    assert not Run.objects.exists()
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123"))
    response = client.post(f"/plans/{plan.pk}/start/")
    assert Run.objects.count() == 1 and response.url == f"/runs/{Run.objects.get().pk}/"
