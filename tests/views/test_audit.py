"""The audit trail: who created, edited, started, cancelled and re-ran what, on the plan and run pages."""
from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from orchestration.models import AuditEvent, Plan, Run
from tests.conftest import run_to_end, user_in

V1 = b"name: Nightly\nparallel_execution:\n  tasks:\n    - {id: build, worker: shell, command: [python, -c, 'import sys; sys.exit(1)']}\n"
V2 = V1.replace(b"sys.exit(1)", b"sys.exit(2)")


def history(page: str) -> list[tuple[str, str]]:
    """(who, what) rows of the page's History table, newest first."""
    section = page.split('id="audit"', 1)[1]
    return re.findall(r"<td>([^<]+)</td><td>([^<]+)</td>", section)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_each_action_is_recorded_with_its_author_and_shown_on_the_plan_and_run_pages(django_user_model, async_client):
    ada = await sync_to_async(user_in)(django_user_model, "ada", "Authors")
    otto = await sync_to_async(user_in)(django_user_model, "otto", "Operators")
    await sync_to_async(async_client.force_login)(ada)
    await async_client.post("/plans/import/", {"file": SimpleUploadedFile("n.yaml", V1)})
    await async_client.post("/plans/import/", {"file": SimpleUploadedFile("n.yaml", V2)})
    await async_client.post("/plans/import/", {"file": SimpleUploadedFile("n.yaml", V2)})  # unchanged: no event
    plan = await Plan.objects.aget(name="Nightly")

    await sync_to_async(async_client.force_login)(otto)
    await async_client.post(f"/plans/{plan.pk}/start/", {"map_shell": "shell"})
    first = await Run.objects.aget()
    await run_to_end(first.pk)
    response = await async_client.post(f"/runs/{first.pk}/rerun/")
    second = await Run.objects.exclude(pk=first.pk).aget()
    await async_client.post(f"/runs/{second.pk}/cancel/")

    plan_page = (await async_client.get(f"/plans/{plan.pk}/")).content.decode()
    assert history(plan_page) == [
        ("otto", "cancelled the run"),
        ("otto", "re-ran failed and skipped tasks"),
        ("otto", "started the run"),
        ("ada", "edited the plan"),
        ("ada", "created the plan"),
    ]
    run_page = (await async_client.get(response.url)).content.decode()
    assert history(run_page) == [("otto", "cancelled the run"), ("otto", "re-ran failed and skipped tasks")]
    assert f"of run #{first.pk}: redoing build" in run_page


@pytest.mark.django_db
def test_events_stay_when_their_user_is_deleted_and_cannot_be_changed_in_the_admin(client, django_user_model):
    from orchestration.plans.store import import_text

    ada = user_in(django_user_model, "ada", "Authors")
    import_text(V1.decode(), "n.yaml", user=ada)
    ada.delete()
    event = AuditEvent.objects.get()
    assert event.actor is None and event.actor_name == "ada" and event.get_action_display() == "created the plan"
    admin = django_user_model.objects.create_superuser("root", password="pw-root-123")
    client.force_login(admin)
    assert client.get(f"/admin/orchestration/auditevent/{event.pk}/change/").status_code == 200
    assert client.post(f"/admin/orchestration/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
