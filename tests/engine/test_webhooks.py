"""Webhooks: signed deliveries to a receiver on 127.0.0.1 when runs start, end or wait at a gate;
a 500 is retried; a delivery whose worker died is delivered all the same; Slack gets a message."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from orchestration.engine import work
from orchestration.engine.scheduler import start_run
from orchestration.models import Webhook, WebhookDelivery
from tests.conftest import drain_engine, local_http_server, make_plan, py

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

PLAN = json.dumps({"name": "Hooked", "parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": py("print('a')")}]}})


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records each POST (headers, body); answers with the next of `answers` (default 200)."""

    got: list[tuple[dict, bytes]] = []
    answers: list[int] = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.got.append((dict(self.headers), body))
            code = self.answers.pop(0) if self.answers else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.got, Receiver.answers = [], []
    with local_http_server(Receiver) as server:
        yield server


async def run_hooked(url: str, **hook):
    await sync_to_async(Webhook.objects.create)(name="ci", url=url, **hook)
    run = await sync_to_async(start_run)(await sync_to_async(make_plan)(PLAN))
    await drain_engine()
    return run


async def test_a_run_is_announced_when_it_starts_and_ends_signed_with_the_hooks_secret(receiver):
    url = f"http://127.0.0.1:{receiver.server_port}/hook"
    run = await run_hooked(url)
    hook = await Webhook.objects.aget()
    events = [(h["X-MagicBox-Event"], json.loads(b)["run"]["state"]) for h, b in Receiver.got]
    assert events == [("run.started", "running"), ("run.succeeded", "succeeded")]
    for headers, body in Receiver.got:
        expected = "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-MagicBox-Signature"] == expected and len(headers["X-MagicBox-Delivery"]) == 36
        assert json.loads(body)["run"]["id"] == run.pk
    states = [d.state async for d in WebhookDelivery.objects.all()]
    assert states == ["succeeded", "succeeded"]
    assert [d.response_code async for d in WebhookDelivery.objects.all()] == [200, 200]


async def test_a_500_is_retried_with_the_same_delivery_id(receiver):
    Receiver.answers = [500]
    await run_hooked(f"http://127.0.0.1:{receiver.server_port}/hook", events=["run.succeeded"])
    delivery = await WebhookDelivery.objects.aget()
    assert delivery.state == "queued" and delivery.response_code == 500 and "retrying in 5 s" in delivery.state_reason
    await WebhookDelivery.objects.filter(pk=delivery.pk).aupdate(queued_at=timezone.now())  # its backoff is over
    await drain_engine()
    delivery = await WebhookDelivery.objects.aget()
    assert delivery.state == "succeeded" and delivery.attempt == 2
    assert Receiver.got[0][0]["X-MagicBox-Delivery"] == Receiver.got[1][0]["X-MagicBox-Delivery"] == delivery.delivery_id


async def test_a_delivery_whose_worker_died_is_delivered_by_another(receiver):
    await sync_to_async(Webhook.objects.create)(name="ci", url=f"http://127.0.0.1:{receiver.server_port}/", events=["run.cancelled"])
    from orchestration.engine.scheduler import cancel_run

    run = await sync_to_async(start_run)(await sync_to_async(make_plan)(PLAN))
    await sync_to_async(cancel_run)(run.pk, "stop")
    delivery = await WebhookDelivery.objects.aget()
    # A worker process claimed it and died before sending: its lease runs out.
    assert await sync_to_async(work.claim)(delivery, "deadhost:1:abc")
    await WebhookDelivery.objects.filter(pk=delivery.pk).aupdate(lease_expires_at=timezone.now())
    assert [d.pk for d in await sync_to_async(work.recover)(WebhookDelivery)] == [delivery.pk]
    await drain_engine()
    assert (await WebhookDelivery.objects.aget()).state == "succeeded"
    assert [h["X-MagicBox-Event"] for h, _ in Receiver.got] == ["run.cancelled"]


async def test_a_slack_hook_gets_a_readable_message_and_a_gate_announces_that_it_waits(receiver):
    gated = json.dumps({"name": "Gated", "parallel_execution": {"tasks": [
        {"id": "build", "worker": "shell", "command": py("print('b')"), "gate": {"approve": True, "message": "look"}},
        {"id": "ship", "worker": "shell", "command": py("print('s')"), "depends_on": ["build"]}]}})
    await sync_to_async(Webhook.objects.create)(name="team", url=f"http://127.0.0.1:{receiver.server_port}/", kind="slack",
                                                events=["run.waiting"])
    await sync_to_async(start_run)(await sync_to_async(make_plan)(gated))
    await drain_engine()
    [(headers, body)] = Receiver.got
    text = json.loads(body)["text"]
    assert "*Gated*" in text and "waits for a decision" in text and "`build`" in text and "/runs/" in text



async def test_a_known_secret_given_as_an_input_is_masked_in_the_payload(receiver, monkeypatch, settings):
    monkeypatch.setenv("MAGICBOX_TEST_TOKEN", "s3cr3t-value-4711")
    settings.MAGICBOX_SECRET_VARIABLES = ["MAGICBOX_TEST_TOKEN"]
    plan = json.dumps({"name": "Secret input", "inputs": {"key": {"default": ""}},
                       "parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": py("print('a')")}]}})
    await sync_to_async(Webhook.objects.create)(name="ci", url=f"http://127.0.0.1:{receiver.server_port}/", events=["run.started"])
    await sync_to_async(start_run)(await sync_to_async(make_plan)(plan), inputs={"key": "s3cr3t-value-4711"})
    await drain_engine()
    [(_, body)] = Receiver.got
    assert b"s3cr3t-value-4711" not in body and json.loads(body)["run"]["inputs"]["key"] == "[secret MAGICBOX_TEST_TOKEN]"
