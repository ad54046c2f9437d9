"""Webhooks: tell other tools when a run starts, ends, or waits at a gate for a person.

`enqueue` runs in the transaction that records the event and makes one WebhookDelivery per
matching active Webhook (models.Webhook: per plan or for every plan, by event), so an event is
never lost to a crash: deliveries are durable background work, claimed, leased and recovered
like every kind (engine.work), and sent by a worker process (`execute`).

A delivery is a POST of JSON with the headers X-MagicBox-Event, X-MagicBox-Delivery (its id, the
same for every retry) and X-MagicBox-Signature: sha256=<HMAC-SHA256 of the body with the
webhook's secret, hex> (verify it as GitHub's webhooks are verified). A "slack" webhook gets
{"text": a readable line} instead. A 2xx answer delivers it; anything else (or no answer within
TIMEOUT seconds) is retried after a backoff (RETRY_DELAYS), at most MAX_ATTEMPTS times.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from datetime import timedelta

import httpx
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from orchestration.engine import work
from orchestration.engine.db import db
from orchestration.engine.leases import Lease, LeaseLost
from orchestration.engine.output import storable
from orchestration.engine.secrets import mask
from orchestration.engine.signals import wake_engine_on_commit
from orchestration.models import DeliveryState, Run, Webhook, WebhookDelivery

TIMEOUT = 10.0  # seconds a receiver has to answer, whole
RETRY_DELAYS = (5, 30, 120, 600, 1800)  # seconds before the 2nd, 3rd, … attempt


def enqueue(run: Run, event: str, task_id: str = "", detail: str = "") -> int:
    """Queue a delivery of `event` (Webhook.EVENTS) about `run` to every active webhook that wants
    it, in the caller's transaction. Returns how many were queued."""
    # events stored before they were validated may be anything: only a list names events.
    hooks = [h for h in Webhook.objects.filter(Q(plan__isnull=True) | Q(plan_id=run.plan_id), active=True)
             if not h.events or (isinstance(h.events, list) and event in h.events)]
    if not hooks:
        return 0
    inputs = {name: mask(value) for name, value in run.inputs.items()}  # a secret given as an input stays here
    payload = {"event": event, "run": {"id": run.pk, "plan": run.plan.name, "state": run.state, "reason": mask(run.state_reason),
                                       "inputs": inputs, "url": f"{settings.MAGICBOX_PUBLIC_URL.rstrip('/')}/runs/{run.pk}/"},
               **({"task": task_id} if task_id else {}), **({"detail": detail} if detail else {}),
               "at": timezone.now().isoformat()}
    WebhookDelivery.objects.bulk_create([WebhookDelivery(webhook=h, run=run, event=event, delivery_id=str(uuid.uuid4()),
                                                         payload=payload) for h in hooks])
    wake_engine_on_commit()
    return len(hooks)


def claim_next(owner: str, scope: work.Scope = work.Scope()) -> WebhookDelivery | None:
    """Claim (engine.work.claim) the oldest delivery that is due, or None."""
    due = work.claimable(WebhookDelivery.objects.filter(state=DeliveryState.QUEUED, queued_at__lte=timezone.now()), scope)
    for delivery in due.order_by("queued_at")[:20]:
        if work.claim(delivery, owner, started_at=timezone.now()):
            return delivery
    return None


def body_of(delivery: WebhookDelivery) -> bytes:
    """What a delivery sends: its payload as JSON, or for a slack webhook {"text": one line}."""
    if delivery.webhook.kind == "slack":
        run = delivery.payload.get("run", {})
        verb = {"run.started": "started", "run.succeeded": "succeeded :white_check_mark:", "run.failed": "failed :x:",
                "run.cancelled": "was cancelled", "run.waiting": "waits for a decision :raised_hand:"}.get(delivery.event, delivery.event)
        task = f" at task `{_slack(delivery.payload['task'])}`" if delivery.payload.get("task") else ""
        reason = f": {_slack(run.get('reason'))}" if run.get("reason") and delivery.event != "run.started" else ""
        return json.dumps({"text": f"Magic Box run #{run.get('id')} of *{_slack(run.get('plan'))}* {verb}{task}{reason} "
                                   f"<{_slack(run.get('url'))}|open it>"}).encode()
    return json.dumps(delivery.payload, sort_keys=True).encode()


def _slack(text) -> str:
    """`text` as plain text in a Slack message: &, < and > escaped as Slack asks, so a plan name
    cannot ping the channel (<!channel>) or hide a link."""
    return str(text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


ANSWER_KEPT = 2000  # characters of a receiver's answer kept
ANSWER_READ = 8192  # bytes of it read at most (the rest is never downloaded)


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """(status, the answer's start) of a POST, reading at most ANSWER_READ bytes of the answer."""
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            read = b""
            async for piece in response.aiter_raw():
                read += piece
                if len(read) >= ANSWER_READ:
                    break
            return response.status_code, read[:ANSWER_READ].decode("utf-8", "replace")[:ANSWER_KEPT]


def signature(secret: str, body: bytes) -> str:
    """The X-MagicBox-Signature header of `body`: "sha256=" and its HMAC-SHA256 with `secret`, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def execute(delivery_id: int, lease: Lease) -> None:
    """Send a claimed delivery and record the answer (the final write of its claim): delivered on
    a 2xx; else queued again after its backoff, or failed after MAX_ATTEMPTS attempts."""
    delivery = await db(lambda: WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id))
    body = body_of(delivery)
    headers = {"Content-Type": "application/json", "User-Agent": "MagicBox-Webhook/1", "X-MagicBox-Event": delivery.event,
               "X-MagicBox-Delivery": delivery.delivery_id, "X-MagicBox-Signature": signature(delivery.webhook.secret, body)}
    code, answer, error = None, "", ""
    try:  # one deadline for the whole call: a receiver trickling its answer is cut off too
        code, answer = await lease.guard(asyncio.wait_for(_post(delivery.webhook.url, body, headers), TIMEOUT))
    except LeaseLost:
        return
    except asyncio.TimeoutError:
        error = f"no complete answer within {TIMEOUT:g} s"
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError, ExceptionGroup) as failure:
        # Whatever the URL or the receiver did (a port out of range reaches here as an
        # ExceptionGroup from the connection layer): recorded, and retried like a 500.
        while isinstance(failure, ExceptionGroup) and failure.exceptions:
            failure = failure.exceptions[0]  # the cause, not the task group that carried it
        error = f"{type(failure).__name__}: {failure}"[:500]
    await db(_record, delivery, lease, code, answer, error)


def _record(delivery: WebhookDelivery, lease: Lease, code: int | None, answer: str, error: str) -> None:
    now = timezone.now()
    fields = {"response_code": code, "response_body": storable(answer)}
    if code is not None and 200 <= code < 300:
        work.finish(delivery, lease.owner, lease.attempt, DeliveryState.SUCCEEDED, f"delivered: {code}", finished_at=now, **fields)
        return
    why = error or f"the receiver answered {code}"
    if delivery.attempts_used < WebhookDelivery.MAX_ATTEMPTS:
        delay = RETRY_DELAYS[min(delivery.attempts_used - 1, len(RETRY_DELAYS) - 1)]
        work.finish(delivery, lease.owner, lease.attempt, DeliveryState.QUEUED, storable(f"{why}; retrying in {delay} s"),
                    claimed_by="", queued_at=now + timedelta(seconds=delay), **fields)
    else:
        work.finish(delivery, lease.owner, lease.attempt, DeliveryState.FAILED,
                    storable(f"{why}; gave up after {delivery.attempts_used} attempts"), finished_at=now, **fields)
