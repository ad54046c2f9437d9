"""New plan from a goal: past drafts are listed, and a draft's goal can be tried again."""
from __future__ import annotations

import pytest

from orchestration.models import PlanDraft

pytestmark = pytest.mark.django_db


def test_past_drafts_are_listed_and_trying_again_keeps_the_goal(logged_in_client, user):
    failed = PlanDraft.objects.create(goal="Add a login page with <b>rate limits</b>", worker="claude", created_by=user,
                                      state="failed", error="The claude worker failed: boom")
    form = logged_in_client.get("/plans/draft/").content.decode()
    assert 'id="past-drafts"' in form and f"#{failed.pk}" in form and "Add a login page with &lt;b&gt;rate limits" in form

    page = logged_in_client.get(f"/plans/drafts/{failed.pk}/").content.decode()
    assert f'href="/plans/draft/?from={failed.pk}"' in page

    again = logged_in_client.get(f"/plans/draft/?from={failed.pk}").content.decode()
    assert "Add a login page with &lt;b&gt;rate limits&lt;/b&gt;</textarea>" in again
    assert logged_in_client.get("/plans/draft/?from=999999").status_code == 200  # a draft that is gone: an empty form
