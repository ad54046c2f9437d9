"""The HTTP API with personal tokens: each endpoint with tokens of each role, refused without a
token or with a revoked or expired one, a run started and waited for as a CI job would, and a
valid OpenAPI schema."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from orchestration.api import tokens
from orchestration.models import ApiToken, AuditEvent, Plan
from tests.conftest import drain_engine, make_plan, py, user_in

pytestmark = pytest.mark.django_db(transaction=True)

PLAN = json.dumps({"name": "API plan", "parallel_execution": {"tasks": [
    {"id": "hello", "worker": "shell", "command": py("print('hello from the api')")},
    {"id": "after", "worker": "shell", "command": py("print('after')"), "depends_on": ["hello"]}]}})


@pytest.fixture
def bearer(django_user_model):
    """{role: the Authorization header of a token of a user with that role}."""
    made = {}
    for role in ("Viewers", "Authors", "Operators"):
        user = user_in(django_user_model, role.lower(), role)
        _, secret = tokens.issue(user, "ci")
        made[role] = f"Bearer {secret}"
    return made


def call(client, method: str, path: str, auth: str | None, body=None):
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    if body is not None:
        return getattr(client, method)(path, data=json.dumps(body), content_type="application/json", **headers)
    return getattr(client, method)(path, **headers)


def test_without_a_token_or_with_a_revoked_or_expired_one_nothing_is_served(client, bearer, django_user_model):
    make_plan(PLAN)
    assert call(client, "get", "/api/plans", None).status_code == 401
    assert "make one on /account/tokens/" in call(client, "get", "/api/plans", "Bearer mbx_nope").json()["message"]
    token = ApiToken.objects.get(user__username="viewers")
    assert call(client, "get", "/api/plans", bearer["Viewers"]).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert call(client, "get", "/api/plans", bearer["Viewers"]).status_code == 401
    ApiToken.objects.filter(pk=token.pk).update(expires_at=None)
    assert tokens.revoke(token.user, token.pk)
    assert call(client, "get", "/api/plans", bearer["Viewers"]).status_code == 401


@pytest.mark.parametrize("method, path, body, allowed", [
    ("get", "/api/plans", None, {"Viewers", "Authors", "Operators"}),
    ("get", "/api/plans/{plan}", None, {"Viewers", "Authors", "Operators"}),
    ("get", "/api/plans/{plan}/export", None, {"Viewers", "Authors", "Operators"}),
    ("post", "/api/plans", {"text": PLAN, "source": "another.json"}, {"Authors"}),
    ("post", "/api/plans/{plan}/runs", {}, {"Operators"}),
    ("get", "/api/runs/{run}", None, {"Viewers", "Authors", "Operators"}),
    ("get", "/api/runs/{run}/tasks/hello/output", None, {"Viewers", "Authors", "Operators"}),
    ("get", "/api/runs/{run}/export.zip", None, {"Viewers", "Authors", "Operators"}),
    ("post", "/api/runs/{run}/rerun", {"task": "after"}, {"Operators"}),
    ("post", "/api/runs/{run}/cancel", None, {"Operators"}),
])
def test_each_role_may_do_what_it_may_do_in_the_browser(client, bearer, method, path, body, allowed):
    from orchestration.engine.scheduler import cancel_run, start_run

    plan = make_plan(PLAN)
    for role, auth in bearer.items():
        run = start_run(plan)
        if path.endswith("/rerun"):
            cancel_run(run.pk, "ended, so that it can be re-run")
        response = call(client, method, path.format(plan=plan.pk, run=run.pk), auth, body)
        if role in allowed:
            assert response.status_code in (200, 201), (role, response.content[:500])
        else:
            assert response.status_code == 403, (role, response.content[:300])
            assert "needs the" in response.json()["message"]


def test_a_ci_job_imports_a_plan_starts_it_and_waits_for_its_verdict(client, bearer):
    imported = call(client, "post", "/api/plans", bearer["Authors"], {"text": PLAN, "source": "ci.json"})
    assert imported.status_code == 201 and imported.json()["revision"] == 1
    assert call(client, "post", "/api/plans", bearer["Authors"], {"text": PLAN, "source": "ci.json"}).status_code == 200
    plan_id = imported.json()["id"]
    started = call(client, "post", f"/api/plans/{plan_id}/runs", bearer["Operators"], {})
    assert started.status_code == 201, started.content
    run_id = started.json()["run"]["id"]
    async_to_sync(drain_engine)()
    run = call(client, "get", f"/api/runs/{run_id}", bearer["Viewers"]).json()
    assert run["run"]["state"] == "succeeded" and [t["state"] for t in run["tasks"]] == ["succeeded", "succeeded"]
    assert run["tasks"][0]["result"].strip() == "hello from the api"
    output = call(client, "get", f"/api/runs/{run_id}/tasks/hello/output", bearer["Viewers"]).json()
    assert "hello from the api" in output["text"] and output["more"] is False
    tail = call(client, "get", f"/api/runs/{run_id}/tasks/hello/output?tail=10", bearer["Viewers"]).json()
    assert tail["text"] == output["text"][-10:]
    event = AuditEvent.objects.get(action="run_started")
    assert event.actor_name == "operators via token 'ci'"
    assert AuditEvent.objects.get(action="plan_created").actor_name == "authors via token 'ci'"
    zipped = call(client, "get", f"/api/runs/{run_id}/export.zip", bearer["Viewers"])
    assert zipped.status_code == 200 and zipped["Content-Type"] == "application/zip"
    assert call(client, "post", f"/api/runs/{run_id}/cancel", bearer["Operators"]).status_code == 409
    again = call(client, "post", f"/api/runs/{run_id}/rerun", bearer["Operators"], {"task": "after"})
    assert again.status_code == 201 and again.json()["run"]["rerun_of"] == run_id


def test_errors_are_json_with_a_message_and_the_field(client, bearer):
    bad = call(client, "post", "/api/plans", bearer["Authors"], {"text": "parallel_execution:\n  tasks:\n    - id: a\n      worker: nope\n"})
    assert bad.status_code == 400
    problem = bad.json()["problems"][0]
    assert (problem["line"], problem["field"]) == (4, "parallel_execution.tasks[0].worker") and "unknown worker 'nope'" in problem["message"]
    missing_run = call(client, "get", "/api/runs/999", bearer["Viewers"])
    assert missing_run.status_code == 404 and missing_run.json() == {"message": "no run 999", "field": "run_id"}
    plan = make_plan(PLAN)
    mapped = call(client, "post", f"/api/plans/{plan.pk}/runs", bearer["Operators"], {"worker_map": {"shell": "nobody"}})
    assert mapped.status_code == 400 and mapped.json()["field"] == "worker_map"
    missing = call(client, "post", f"/api/plans/{plan.pk}/runs", bearer["Operators"], {"worker_map": "x"})
    assert missing.status_code == 422 and missing.json()["field"] == "worker_map"


def test_the_openapi_schema_is_valid_and_the_docs_are_served_without_a_cdn(client):
    from openapi_spec_validator import validate

    schema = client.get("/api/openapi.json").json()
    validate(schema)
    assert {"/api/plans", "/api/runs/{run_id}", "/api/plans/{plan_id}/runs"} <= set(schema["paths"])
    docs = client.get("/api/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()


def test_a_user_makes_and_revokes_tokens_on_their_page_and_sees_the_secret_once(client, django_user_model):
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    made = client.post("/account/tokens/", {"action": "create", "name": "laptop", "days": "30"}).content.decode()
    secret = made.split('id="new-token-secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("mbx_") and tokens.authenticate(secret) is not None
    assert secret not in client.get("/account/tokens/").content.decode(), "shown once"
    stored = ApiToken.objects.get(name="laptop")
    assert stored.digest != secret and secret not in stored.digest and stored.expires_at is not None
    assert "already have a token named" in client.post("/account/tokens/", {"action": "create", "name": "laptop"}).content.decode()
    refused = client.post("/account/tokens/", {"action": "create", "name": "nightly", "days": "abc"}).content.decode()
    assert "Days must be a whole number." in refused and 'value="nightly"' in refused and 'value="abc"' in refused, "typed, kept"
    client.post("/account/tokens/", {"action": "revoke", "token": str(stored.pk)})
    assert tokens.authenticate(secret) is None
    assert not Plan.objects.exists()


def test_a_run_started_over_the_api_takes_inputs_and_a_missing_one_is_named(client, bearer):
    plan = make_plan(json.dumps({"name": "Inputs", "inputs": {"ticket": {"required": True}},
                                 "parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": ["echo", "{{ inputs.ticket }}"]}]}}))
    missing = call(client, "post", f"/api/plans/{plan.pk}/runs", bearer["Operators"], {})
    assert missing.status_code == 400 and missing.json()["field"] == "inputs.ticket" and "required" in missing.json()["message"]
    started = call(client, "post", f"/api/plans/{plan.pk}/runs", bearer["Operators"], {"inputs": {"ticket": "CI-42"}})
    assert started.status_code == 201
    async_to_sync(drain_engine)()
    run = call(client, "get", f"/api/runs/{started.json()['run']['id']}", bearer["Viewers"]).json()
    assert run["tasks"][0]["result"].strip() == "CI-42" and run["run"]["inputs"] == {"ticket": "CI-42"}


def test_a_tasks_diff_is_served_to_every_role_and_a_task_without_one_says_why(client, bearer, repo):
    plan = make_plan(json.dumps({"name": "Diff", "workspace": {"repository": str(repo), "base": "main"}, "parallel_execution": {
        "tasks": [{"id": "edit", "worker": "shell", "command": py("open('new.txt', 'w').write('new\\n')")}]}}))
    started = call(client, "post", f"/api/plans/{plan.pk}/runs", bearer["Operators"], {}).json()["run"]["id"]
    async_to_sync(drain_engine)()
    for auth in bearer.values():
        diff = call(client, "get", f"/api/runs/{started}/tasks/edit/diff", auth)
        assert diff.status_code == 200 and "+new" in diff.content.decode()
    assert call(client, "get", f"/api/runs/{started}/tasks/nope/diff", bearer["Viewers"]).status_code == 404


def test_odd_paging_ids_beyond_any_run_maps_and_numbers_are_refused_in_json_and_an_empty_body_starts(client, bearer):
    plan = make_plan(PLAN)
    started = client.generic("POST", f"/api/plans/{plan.pk}/runs", b"", HTTP_AUTHORIZATION=bearer["Operators"])  # curl -X POST: no body
    assert started.status_code == 201, started.content
    run_id = started.json()["run"]["id"]
    async_to_sync(drain_engine)()
    for path in (f"/api/runs/{10**30}/tasks/hello/output", f"/api/runs/{2**63}/tasks/hello/diff"):
        answer = call(client, "get", path, bearer["Viewers"])
        assert answer.status_code == 404 and answer.json() == {"message": f"no run {path.split('/')[3]}", "field": "run_id"}
    for query, field in (("tail=-5", "tail"), ("after=-1", "after"), ("tail=5&after=2", "tail")):
        answer = call(client, "get", f"/api/runs/{run_id}/tasks/hello/output?{query}", bearer["Viewers"])
        assert answer.status_code == 422 and answer.json()["field"] == field, (query, answer.content)
    tailed = call(client, "get", f"/api/runs/{run_id}/tasks/hello/output?tail=5", bearer["Viewers"]).json()
    whole = call(client, "get", f"/api/runs/{run_id}/tasks/hello/output?after={tailed['after']}", bearer["Viewers"]).json()
    assert whole["text"].endswith(tailed["text"]), "tail's `after` is the chunk its text follows"
    mapped = call(client, "post", f"/api/plans/{plan.pk}/runs", bearer["Operators"], {"worker_map": {"gemini": "claude"}})
    assert mapped.status_code == 400 and mapped.json()["field"] == "worker_map" and "no 'gemini' tasks" in mapped.json()["message"]
    inputs_plan = make_plan(json.dumps({"name": "Numbers", "inputs": {"n": {"default": 1}},
                                        "parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": ["echo", "{{ inputs.n }}"]}]}}))
    for number in ("NaN", "Infinity", "1e400"):
        answer = client.post(f"/api/plans/{inputs_plan.pk}/runs", data='{"inputs": {"n": %s}}' % number,
                             content_type="application/json", HTTP_AUTHORIZATION=bearer["Operators"])
        assert answer.status_code == 400 and answer.json()["field"] == "inputs.n" and "finite" in answer.json()["message"], answer.content


def test_a_plan_named_after_its_source_gets_a_name_that_exports_and_imports_back(client, bearer):
    text = "parallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: 'true'}\n"
    for source, name in (("a\u0000b.yaml", "ab"), ("s" * 100_000 + ".yaml", "s" * 199 + "…"), ("../../../etc/passwd", "passwd"),
                         ("\u200b\n.yaml", "Untitled plan")):
        made = call(client, "post", "/api/plans", bearer["Authors"], {"text": text, "source": source})
        assert made.status_code == 201 and made.json()["name"] == name, (source[:20], made.content[:300])
        exported = client.get(f"/api/plans/{made.json()['id']}/export", HTTP_AUTHORIZATION=bearer["Viewers"]).content.decode()
        assert exported.startswith("# yaml-language-server: $schema=http://testserver/schema/plan.json\n"), "a URL editors can fetch"
        again = call(client, "post", "/api/plans", bearer["Authors"], {"text": exported, "source": "again.yaml"})
        assert again.status_code in (200, 201) and again.json()["name"] == name, again.content[:300]


def test_runs_are_listed_newest_first_by_plan_and_state_in_pages(client, bearer):
    from orchestration.engine.scheduler import cancel_run, start_run

    one, other = make_plan(PLAN), make_plan(PLAN.replace('"name": "', '"name": "Other ', 1))
    runs = [start_run(one), start_run(other), start_run(one)]
    cancel_run(runs[0].pk, "stop")
    listed = call(client, "get", f"/api/runs?plan={one.pk}", bearer["Viewers"]).json()
    assert [r["id"] for r in listed] == [runs[2].pk, runs[0].pk] and listed[1]["state"] == "cancelled"
    assert [r["id"] for r in call(client, "get", "/api/runs?state=cancelled", bearer["Viewers"]).json()] == [runs[0].pk]
    page = call(client, "get", "/api/runs?limit=2", bearer["Viewers"]).json()
    rest = call(client, "get", f"/api/runs?limit=2&before={page[-1]['id']}", bearer["Viewers"]).json()
    assert [r["id"] for r in page + rest] == [r.pk for r in reversed(runs)]
    for query, field in (("state=done", "state"), ("limit=0", "limit"), ("limit=1000", "limit")):
        answer = call(client, "get", f"/api/runs?{query}", bearer["Viewers"])
        assert answer.status_code == 422 and answer.json()["field"] == field
    assert call(client, "get", f"/api/runs?plan={10**30}&before={-5}", bearer["Viewers"]).json() == []
    assert call(client, "get", "/api/runs", None).status_code == 401
