"""Webhook delivery bugs found by hostile testing."""

import http.server
import json
import time

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine import webhooks
from orchestration.engine.scheduler import start_run
from orchestration.models import Webhook, WebhookDelivery
from tests.conftest import drain_engine, local_http_server, make_plan, py

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_slack_text_escapes_control_sequences_from_a_plan_name():
    """An Author names a plan `<!channel> <https://evil.example|Open the run>`: Slack's mrkdwn
    turns that into an @channel ping and a spoofed link. Slack requires &, <, > escaped."""
    Webhook.objects.create(name="slack", url="http://127.0.0.1:9/hook", kind="slack", events=["run.started"])
    plan = make_plan(json.dumps({"name": "<!channel> <https://evil.example|Open the run>", "parallel_execution": {"tasks": [
        {"id": "a", "worker": "shell", "command": py("print(1)")}]}}))
    start_run(plan)
    delivery = WebhookDelivery.objects.select_related("webhook").get()
    text = json.loads(webhooks.body_of(delivery))["text"]
    assert "<!channel>" not in text and "<https://evil.example|" not in text, text


class Trickle(http.server.BaseHTTPRequestHandler):
    seconds = 4.0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        end = time.monotonic() + self.seconds
        try:
            while time.monotonic() < end:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.mark.asyncio
async def test_a_receiver_that_trickles_its_answer_is_cut_off_after_the_timeout(monkeypatch):
    """TIMEOUT is the seconds a receiver has to answer, whole: one sending a byte every 0.2 s is
    cut off (httpx's own timeout is per read), and the delivery is retried later."""
    monkeypatch.setattr(webhooks, "TIMEOUT", 1.0)
    with local_http_server(Trickle) as server:
        await sync_to_async(Webhook.objects.create)(name="slow", url=f"http://127.0.0.1:{server.server_port}/", events=["run.started"])
        await sync_to_async(start_run)(await sync_to_async(make_plan)(json.dumps({"name": "T", "parallel_execution": {"tasks": [
            {"id": "a", "worker": "shell", "command": py("print(1)")}]}})))
        await drain_engine()
    delivery = await WebhookDelivery.objects.aget()
    assert delivery.state == "queued" and delivery.state_reason.startswith("no complete answer within 1 s; retrying"), \
        delivery.state_reason


class Huge(http.server.BaseHTTPRequestHandler):
    size = 40 * 1024 * 1024
    sent = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        chunk = b"y" * 65536
        try:
            for _ in range(self.size // len(chunk)):
                self.wfile.write(chunk)
                Huge.sent += len(chunk)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.mark.asyncio
async def test_a_huge_answer_is_not_read_whole_into_memory():
    """Only 2000 characters of the answer are kept, yet the whole body (any size, and a gzip
    bomb decompressed) is read into memory first: response.text[:2000] (webhooks.py)."""
    Huge.sent = 0
    with local_http_server(Huge) as server:
        await sync_to_async(Webhook.objects.create)(name="big", url=f"http://127.0.0.1:{server.server_port}/", events=["run.started"])
        await sync_to_async(start_run)(await sync_to_async(make_plan)(json.dumps({"name": "H", "parallel_execution": {"tasks": [
            {"id": "a", "worker": "shell", "command": py("print(1)")}]}})))
        await drain_engine()
    delivery = await sync_to_async(WebhookDelivery.objects.get)()
    assert delivery.state == "succeeded"
    assert Huge.sent < 16 * 1024 * 1024, f"the receiver could send {Huge.sent >> 20} MiB: the client read it all"


def test_the_admin_refuses_events_that_are_not_a_list_of_known_ones_and_a_port_out_of_range(admin_client):
    def add(**fields):
        data = {"name": "h", "url": "http://127.0.0.1:9/", "kind": "json", "secret": "", "active": "on", **fields}
        return admin_client.post("/admin/orchestration/webhook/add/", data)

    assert "Select a valid choice. run.finished is not one of the available choices." in add(events=["run.finished"]).content.decode()
    assert "port must be a number from 1 to 65535" in add(url="http://127.0.0.1:99999/").content.decode()
    assert not Webhook.objects.exists()
    assert add(events=["run.failed", "run.waiting"]).status_code == 302
    assert Webhook.objects.get().events == ["run.failed", "run.waiting"]


@pytest.mark.asyncio
async def test_a_webhook_stored_with_malformed_events_or_an_unusable_url_harms_no_run(caplog):
    """Rows stored before validation existed (or written by hand): events that are not a list
    match nothing, and a URL no connection can use fails its delivery with the reason; the run
    itself ends as it should."""
    await sync_to_async(Webhook.objects.bulk_create)([Webhook(name="odd", url="http://127.0.0.1:9/", events=5, secret="s"),
                                                      Webhook(name="port", url="http://127.0.0.1:99999/", events=["run.started"], secret="s")])
    run = await sync_to_async(start_run)(await sync_to_async(make_plan)(json.dumps({"name": "T", "parallel_execution": {"tasks": [
        {"id": "a", "worker": "shell", "command": py("print(1)")}]}})))
    await drain_engine()
    run = await sync_to_async(type(run).objects.get)(pk=run.pk)
    assert run.state == "succeeded", run.state_reason
    delivery = await WebhookDelivery.objects.aget()  # only the URL hook's run.started
    assert "port" in delivery.state_reason.lower() and "internal error" not in delivery.state_reason, delivery.state_reason
