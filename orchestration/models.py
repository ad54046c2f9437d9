"""Plans, their immutable revisions, runs, task runs, their stored output, and the other kinds
of background work (checks, plan drafts, integrations).

Every state change of a run, task run, check, draft or integration goes through
`StateMachine.transition`, which checks the transition is legal and applies it with one
conditional UPDATE, so that of several processes racing for the same change exactly one wins,
and records it as a StateChange. Background work (`LeasedWork`: task runs, checks, drafts,
integrations) is claimed, leased and recovered by one protocol, orchestration.engine.work.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from orchestration import direct_sql
from orchestration.plans.spec import PlanSpec


class PlanSpecField(models.JSONField):
    """A PlanSpec stored as its JSON (PlanSpec.to_dict) and read back typed (PlanSpec.from_dict).
    Assigning a dict stores it as given (a migration's or a test's raw spec)."""

    def from_db_value(self, value, expression, connection):
        data = super().from_db_value(value, expression, connection)
        return PlanSpec.from_dict(data) if isinstance(data, dict) else data

    def get_prep_value(self, value):
        return super().get_prep_value(value.to_dict() if isinstance(value, PlanSpec) else value)

    def to_python(self, value):
        return PlanSpec.from_dict(value) if isinstance(value, dict) else value


class Plan(models.Model):
    """A named plan. Its content lives in revisions; `latest_revision` is the current one."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def latest_revision(self) -> PlanRevision | None:
        return self.revisions.order_by("-number").first()


class PlanRevision(models.Model):
    """An immutable version of a plan: the validated spec (plans.spec.PlanSpec) and its source text."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    spec = PlanSpecField()
    source_text = models.TextField(blank=True)
    source_name = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "number"], name="unique_revision_number")]
        ordering = ["plan", "-number"]

    def __str__(self) -> str:
        return f"{self.plan.name} r{self.number}"


class PromptTemplate(models.Model):
    """A reusable worker prompt, referenced by tasks through `prompt_file: <path>`.

    The starter set ships as files under prompts/ and is loaded on start; edits in the browser
    live here and take precedence over the files.
    """

    path = models.CharField(max_length=300, unique=True, help_text="e.g. prompts/workers/gemini/frontend-builder.md")
    body = models.TextField()
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path


class RunState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskState(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # its work succeeded; held at its gate until approved, rejected or checked
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


TASK_TERMINAL = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED, TaskState.TIMED_OUT}
TASK_UNSUCCESSFUL = TASK_TERMINAL - {TaskState.SUCCEEDED}
GATE_REJECTED = "gate rejected"  # how the state_reason of a task run whose gate was rejected begins (engine.gates)
KEPT_FROM = "kept from run #"  # how the state_reason of a task run a re-run copied from its run begins
RUN_TERMINAL = {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}

RUN_TRANSITIONS: dict[str, set[str]] = {
    RunState.QUEUED: {RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED},
    RunState.RUNNING: {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED},
}
TASK_TRANSITIONS: dict[str, set[str]] = {
    # pending -> waiting | failed: a task with candidates once they have ended (engine.candidates).
    TaskState.PENDING: {TaskState.QUEUED, TaskState.SKIPPED, TaskState.CANCELLED, TaskState.WAITING, TaskState.FAILED},
    TaskState.QUEUED: {TaskState.RUNNING, TaskState.CANCELLED, TaskState.FAILED},
    # running -> queued: a retry of a failed or lost attempt.
    # running -> pending: a review whose loop asked for changes waits for its fixes (engine.loops).
    TaskState.RUNNING: {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.TIMED_OUT, TaskState.CANCELLED, TaskState.QUEUED,
                        TaskState.WAITING, TaskState.PENDING},
    # waiting -> succeeded | failed: its gate approved (or its check passed) or rejected.
    TaskState.WAITING: {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED},
    # succeeded -> queued | pending: a new round of the review loop it belongs to (engine.loops).
    TaskState.SUCCEEDED: {TaskState.QUEUED, TaskState.PENDING},
}


class IllegalTransition(Exception):
    """A programming error: a state change the state machine does not allow."""


class StateMachine(models.Model):
    """Shared behaviour of everything with a state: duration, and legal, recorded state changes.

    Subclasses set KIND (the name used in StateChange records and messages), TRANSITIONS
    (state -> states it may change to) and TERMINAL, and have the fields state, state_reason,
    started_at and finished_at.
    """

    KIND = ""
    TRANSITIONS: dict[str, set[str]] = {}
    TERMINAL: set[str] = set()

    class Meta:
        abstract = True

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (or to now while running); None before it starts."""
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    @property
    def is_finished(self) -> bool:
        return self.state in self.TERMINAL

    def transition(self, new_state: str, reason: str = "", expect: str | None = None, owner: str | None = None,
                   held_attempt: int | None = None, **fields) -> bool:
        """Move to `new_state` if still in a state that allows it (or exactly `expect`, if given),
        and, with `owner`, only while `owner` holds the work's claim (LeasedWork.claimed_by),
        with `held_attempt` too, only while that claim is still that attempt.

        One conditional UPDATE: of several processes racing for the change, exactly one gets
        True; False means another got there first or the state no longer allows it. The change
        is recorded as a StateChange. Extra fields (started_at, finished_at, ...) are written
        with it. Raises IllegalTransition if `new_state` cannot be reached from `expect` (or
        from any state) — a programming error.
        """
        sources = [s for s, targets in self.TRANSITIONS.items() if new_state in targets]
        if expect is not None:
            if expect not in sources:
                raise IllegalTransition(f"{type(self).__name__} cannot go from {expect} to {new_state}")
            sources = [expect]
        if not sources:
            raise IllegalTransition(f"no {type(self).__name__} state leads to {new_state}")
        match: dict[str, object] = {"pk": self.pk}
        if owner is not None:
            match["claimed_by"] = owner
        if held_attempt is not None:
            match["attempt"] = held_attempt
        # With one possible source state, a change came from it: no need to read it first.
        old = sources[0] if len(sources) == 1 else type(self).objects.filter(**match).values_list("state", flat=True).first()
        changed = direct_sql.update_where(type(self), match, {"state": new_state, "state_reason": reason, **fields}, sources)
        if changed:
            direct_sql.insert(StateChange, [{"kind": self.KIND, "object_id": self.pk, "from_state": old or "", "to_state": new_state,
                                             "reason": reason, "at": timezone.now(), **self.history_links()}])
            self.state, self.state_reason = new_state, reason
            computed = [key for key, value in fields.items() if hasattr(value, "resolve_expression")]
            for key, value in fields.items():
                if key not in computed:
                    setattr(self, key, value)
            if computed:  # F("attempt") + 1 and the like: read back what the database made of them
                self.refresh_from_db(fields=computed)
        return bool(changed)

    def history_links(self) -> dict[str, int | None]:
        """The run (and task run) a StateChange of this object belongs to: {"run_id": …, "task_run_id": …}."""
        return {}


class LeasedWork(StateMachine):
    """Background work done by a worker process: a task run, a check, a plan draft or an integration.

    Every kind follows one protocol (orchestration.engine.work): a process claims a QUEUED row
    (moving it to RUNNING with its name in claimed_by and a lease), renews the lease while the
    work goes on, and makes the final write only while it still holds the claim. A process that
    stops re-queues what it held at once; one that dies is noticed by its lease (or at once on
    its own host), and the work is queued again, or failed after MAX_WORKER_LOSSES such losses.

    attempt: claims so far (1 for the first). interruptions: attempts stopped with their worker
    process (SIGTERM) and queued again; worker_losses: attempts lost with a worker process that
    died. Neither counts against a task's retries.
    """

    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"

    claimed_by = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    interruptions = models.PositiveIntegerField(default=0)
    worker_losses = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def attempts_used(self) -> int:
        """Attempts that count against the work's own retries (not those lost with a worker process)."""
        return self.attempt - self.interruptions - self.worker_losses

    def failure_fields(self, reason: str, now) -> dict:
        """Fields written with the move to FAILED when the protocol gives up on the work."""
        return {"finished_at": now}

    def requeue_fields(self, now) -> dict:
        """Fields written with a move back to QUEUED after its worker process stopped or died."""
        return {}


class Run(StateMachine):
    """One execution of a plan revision."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="runs")
    revision = models.ForeignKey(PlanRevision, on_delete=models.PROTECT, related_name="runs")
    state = models.CharField(max_length=20, choices=RunState.choices, default=RunState.QUEUED, db_index=True)
    state_reason = models.TextField(blank=True)
    worker_map = models.JSONField(default=dict, blank=True)
    # {name: value} of the plan's inputs for this run (plans.inputs.resolve), given at its start.
    inputs = models.JSONField(default=dict, blank=True)
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    # The commit the plan's workspace base resolved to when the run's first task started ("" before).
    base_commit = models.CharField(max_length=64, blank=True)
    # Its tasks' branches are <branch_prefix>/<task>: magicbox/run-<id>, or magicbox/run-<id>-2, …
    # when the repository already had branches of that name (another Magic Box's run).
    branch_prefix = models.CharField(max_length=100, blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # True once a task of the run ran without the task sandbox (MAGICBOX_SANDBOX=off).
    unsandboxed = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("operate_run", "Can start, cancel and re-run runs")]

    KIND = "run"
    TRANSITIONS = RUN_TRANSITIONS
    TERMINAL = RUN_TERMINAL

    def __str__(self) -> str:
        return f"run #{self.pk} of {self.plan.name}"

    def history_links(self) -> dict[str, int | None]:
        return {"run_id": self.pk}


class TaskRun(LeasedWork):
    """One task of a plan in one run. Each retry is a new attempt of the same task run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="task_runs")
    task_id = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=50)
    upstream = models.JSONField(default=list)
    state = models.CharField(max_length=20, choices=TaskState.choices, default=TaskState.PENDING, db_index=True)
    state_reason = models.TextField(blank=True)
    max_attempts = models.PositiveIntegerField(default=1)
    timeout = models.FloatField(null=True, blank=True)
    prompt = models.TextField(blank=True)
    # The argv a shell task's attempt ran: its command with references and inputs filled in
    # ([] for an agent task, or before its first attempt begins).
    command = models.JSONField(default=list, blank=True)
    result = models.TextField(blank=True)
    error = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    cost_usd = models.FloatField(null=True, blank=True)
    input_tokens = models.BigIntegerField(null=True, blank=True)
    output_tokens = models.BigIntegerField(null=True, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    cli_version = models.CharField(max_length=100, blank=True)  # the agent CLI's version, "" when unknown
    model = models.CharField(max_length=200, blank=True)  # the model that did the work, "" when unknown
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    output_seq = models.PositiveIntegerField(default=0)
    output_bytes = models.BigIntegerField(default=0)
    # The findings of the review whose loop queued this attempt (engine.loops), for its prompt; "" otherwise.
    findings = models.TextField(blank=True)
    # For a candidate of a task with candidates (engine.candidates): that task's id; "" otherwise.
    candidate_of = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "task_id"], name="unique_task_per_run")]
        indexes = [models.Index(fields=["state", "queued_at"])]

    KIND = "task run"
    TRANSITIONS = TASK_TRANSITIONS
    TERMINAL = TASK_TERMINAL

    def __str__(self) -> str:
        return f"{self.task_id} in run #{self.run_id}"

    def history_links(self) -> dict[str, int | None]:
        return {"run_id": self.run_id, "task_run_id": self.pk}

    def failure_fields(self, reason: str, now) -> dict:
        return {"error": reason, "finished_at": now}

    def requeue_fields(self, now) -> dict:
        return {"queued_at": now}

    @property
    def kept_from(self) -> str:
        """"kept from run #N" when a re-run copied this task run as it ended in run #N, else ""."""
        return self.state_reason.split(":", 1)[0] if self.state_reason.startswith(KEPT_FROM) else ""

    def output_text(self) -> str:
        """The whole stored output of every attempt, in order."""
        return "".join(self.output_chunks.order_by("seq").values_list("text", flat=True))


class OutputChunk(models.Model):
    """A piece of a task run's live output, stored as it arrives (one flush of the executor).

    newlines: how many "\n" `text` holds, kept so a log's line numbers are summed without
    reading the output (live.first_line)."""

    task_run = models.ForeignKey(TaskRun, on_delete=models.CASCADE, related_name="output_chunks")
    seq = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=1)
    text = models.TextField()
    newlines = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["task_run", "seq"]
        constraints = [models.UniqueConstraint(fields=["task_run", "seq"], name="unique_chunk_seq")]


class StateChange(models.Model):
    """A record of one state change of anything with a state (StateMachine): when and why.

    kind: the StateMachine's KIND ("run", "task run", "check", "draft", "integration") and
    object_id its primary key. run: the run it belongs to (empty for drafts); task_run: the
    task run, for a task run's changes.
    """

    kind = models.CharField(max_length=20, default="run")
    object_id = models.PositiveBigIntegerField(null=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="state_changes")
    task_run = models.ForeignKey(TaskRun, null=True, blank=True, on_delete=models.CASCADE, related_name="state_changes")
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["kind", "object_id"])]


class DraftState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PlanDraft(LeasedWork):
    """A plan drafted by the orchestrator worker from a goal, waiting for a person to review it.

    state (DraftState): queued -> running -> succeeded (spec holds a valid plan) | failed (error
    says why; output keeps what the worker answered). A draft is never saved as a plan by itself.
    log: what the drafter wrote as it went (display lines of its output, engine.drafts), secrets
    masked: its last LOG_LIMIT characters. writing: the end of the message it is writing now.
    """

    KIND = "draft"
    TRANSITIONS = {
        DraftState.QUEUED: {DraftState.RUNNING, DraftState.FAILED},
        DraftState.RUNNING: {DraftState.SUCCEEDED, DraftState.FAILED, DraftState.QUEUED},
    }
    TERMINAL = {DraftState.SUCCEEDED, DraftState.FAILED}
    LOG_LIMIT = 64 * 1024  # characters of the drafter's log kept (its end)

    goal = models.TextField()
    worker = models.CharField(max_length=50)
    state = models.CharField(max_length=20, choices=DraftState.choices, default=DraftState.QUEUED, db_index=True)
    state_reason = models.TextField(blank=True)
    output = models.TextField(blank=True)
    spec = PlanSpecField(null=True, blank=True)
    error = models.TextField(blank=True)
    log = models.TextField(blank=True)
    writing = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"plan draft #{self.pk} by {self.worker}"

    @property
    def log_cut(self) -> bool:
        """Whether the start of the log was dropped (it reached LOG_LIMIT characters)."""
        return len(self.log) >= self.LOG_LIMIT

    @property
    def shown_log(self) -> str:
        """The log as shown: from its first whole line when its start was dropped."""
        if not self.log_cut:
            return self.log
        newline = self.log.find("\n", 0, 4096)
        return self.log[newline + 1:] if newline != -1 else self.log

    def failure_fields(self, reason: str, now) -> dict:
        return {"error": reason, "finished_at": now}


class CheckState(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    UNVERIFIED = "unverified"


class Verdict(LeasedWork):
    """The verdict on one completion criterion or contract check of a run (a check), with its evidence.

    kind: "criterion", "contract", "gate" (a gate's check command; position: its task's index
    in the plan, run once the task is waiting at it) or "choice" (a candidates' choice command,
    run in each candidate's directory once they have ended). state (CheckState): pending -> running (a command is being
    run by a worker process) -> passed | failed | unverified (text nobody can check); checks
    decided from the database go from pending straight to their verdict. evidence: what
    decided it (a command's exit code and output, a review's answer, the failed tasks).
    """

    KIND = "check"
    QUEUED = CheckState.PENDING
    DECIDED = {CheckState.PASSED, CheckState.FAILED, CheckState.UNVERIFIED}
    TRANSITIONS = {
        CheckState.PENDING: {CheckState.RUNNING, *DECIDED},
        CheckState.RUNNING: {CheckState.PENDING, *DECIDED},
    }
    TERMINAL = DECIDED

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="verdicts")
    kind = models.CharField(max_length=20)
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=500)
    state = models.CharField(max_length=20, choices=CheckState.choices, default=CheckState.PENDING, db_index=True)
    state_reason = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    evidence = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "kind", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "kind", "position"], name="unique_verdict")]

    def __str__(self) -> str:
        return f"check '{self.name}' of run #{self.run_id}"

    @property
    def finished_at(self):
        return self.decided_at

    @property
    def is_decided(self) -> bool:
        return self.state in self.DECIDED

    def history_links(self) -> dict[str, int | None]:
        return {"run_id": self.run_id}

    def failure_fields(self, reason: str, now) -> dict:
        return {"summary": reason[:2000], "decided_at": now}


class EngineLock(models.Model):
    """A named row that engine processes lock (SELECT … FOR UPDATE) to serialise a decision.

    "claim": held while a process counts the running task runs and claims the next one, so the
    global and per-worker concurrency limits hold exactly across any number of processes on
    PostgreSQL (on SQLite, IMMEDIATE transactions already serialise every writer).
    """

    name = models.CharField(max_length=50, primary_key=True)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def hold(cls, name: str) -> None:
        """Lock row `name` until the surrounding transaction ends (creating it the first time).

        Must be called inside transaction.atomic(); raises TransactionManagementError otherwise.
        On SQLite it reads nothing: the surrounding IMMEDIATE transaction already holds the
        database's one write lock.
        """
        from django.db import connection, transaction

        if connection.vendor == "sqlite":
            if not transaction.get_connection().in_atomic_block:
                raise transaction.TransactionManagementError("EngineLock.hold needs a transaction")
            return
        if not cls.objects.select_for_update().filter(name=name).exists():  # one statement once the row exists
            cls.objects.get_or_create(name=name)
            cls.objects.select_for_update().get(name=name)


class AuditEvent(models.Model):
    """Who did what to a plan or a run, and when: one row per action, never changed afterwards.

    `actor_name` keeps the username (or the command, e.g. "manage.py runplan") even after the
    user is deleted.
    """

    class Action(models.TextChoices):
        PLAN_CREATED = "plan_created", "created the plan"
        PLAN_EDITED = "plan_edited", "edited the plan"
        RUN_STARTED = "run_started", "started the run"
        RUN_CANCELLED = "run_cancelled", "cancelled the run"
        TASK_CANCELLED = "task_cancelled", "cancelled a task"
        RUN_RERUN = "run_rerun", "re-ran failed and skipped tasks"
        TASK_RETRIED = "task_retried", "retried a task"
        RUN_INTEGRATED = "run_integrated", "integrated the task branches"
        GATE_APPROVED = "gate_approved", "approved a gate"
        GATE_REJECTED = "gate_rejected", "rejected a gate"
        CANDIDATE_CHOSEN = "candidate_chosen", "chose a candidate"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=30, choices=Action.choices)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events")
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.get_action_display()} ({self.at:%Y-%m-%d %H:%M})"


def validate_webhook_events(value) -> None:
    """Webhook.events: a list of Webhook.EVENTS (empty: all). Raises ValidationError naming what is not."""
    from django.core.exceptions import ValidationError

    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise ValidationError('Give a list of event names, e.g. ["run.failed", "run.waiting"] (empty: every event).')
    unknown = [e for e in value if e not in Webhook.EVENTS]
    if unknown:
        raise ValidationError(f"Unknown event {', '.join(map(repr, unknown))}: the events are {', '.join(Webhook.EVENTS)}.")


def validate_webhook_url(value: str) -> None:
    """Webhook.url: http or https, with a port a connection can use. Raises ValidationError."""
    from urllib.parse import urlsplit

    from django.core.exceptions import ValidationError

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("A webhook URL starts with http:// or https://.")
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535
        port = 0
    if port == 0:
        raise ValidationError("The URL's port must be a number from 1 to 65535.")


class Webhook(models.Model):
    """A URL Magic Box calls when a run starts, ends or waits at a gate (orchestration.webhooks).

    plan: only that plan's runs (None: every plan's). events: which of EVENTS. kind: "json" (a
    JSON body signed with `secret`: X-MagicBox-Signature: sha256=<HMAC-SHA256 hex of the body>)
    or "slack" (a readable message for a Slack incoming webhook).
    """

    EVENTS = ("run.started", "run.succeeded", "run.failed", "run.cancelled", "run.waiting")
    KINDS = (("json", "JSON, signed"), ("slack", "Slack message"))

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=2000, validators=[validate_webhook_url])
    kind = models.CharField(max_length=10, choices=KINDS, default="json")
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks",
                             help_text="Only this plan's runs; empty: every plan's.")
    events = models.JSONField(default=list, blank=True, validators=[validate_webhook_events], help_text='A JSON list of events, e.g. ["run.failed", "run.waiting"]; '
                                                                  'empty: all of run.started, run.succeeded, run.failed, '
                                                                  'run.cancelled, run.waiting.')
    secret = models.CharField(max_length=100, blank=True, help_text="Signs each delivery (HMAC-SHA256); made for you when empty.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"webhook {self.name}"

    def save(self, *args, **kwargs):
        if not self.secret:
            import secrets

            self.secret = secrets.token_urlsafe(32)
        super().save(*args, **kwargs)


class DeliveryState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookDelivery(LeasedWork):
    """One call of a webhook for one event (orchestration.webhooks), durable background work:
    queued when the event happens (in its transaction), claimed and sent by a worker process,
    retried with backoff (queued_at: not before) until MAX_ATTEMPTS, recovered like every kind.

    delivery_id: sent as X-MagicBox-Delivery (the same for every retry). payload: the JSON sent.
    response_code / response_body: the last answer (the body's first 2,000 characters).
    """

    KIND = "delivery"
    TRANSITIONS = {
        DeliveryState.QUEUED: {DeliveryState.RUNNING, DeliveryState.FAILED},
        DeliveryState.RUNNING: {DeliveryState.SUCCEEDED, DeliveryState.FAILED, DeliveryState.QUEUED},
    }
    TERMINAL = {DeliveryState.SUCCEEDED, DeliveryState.FAILED}
    MAX_ATTEMPTS = 6

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    event = models.CharField(max_length=30)
    delivery_id = models.CharField(max_length=40, unique=True)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=20, choices=DeliveryState.choices, default=DeliveryState.QUEUED, db_index=True)
    state_reason = models.TextField(blank=True)
    response_code = models.IntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook.name} ({self.delivery_id[:8]})"

    def history_links(self) -> dict[str, int | None]:
        return {"run_id": self.run_id}

    def requeue_fields(self, now) -> dict:
        return {"queued_at": now}


class ApiToken(models.Model):
    """A personal API token (orchestration.api): what its bearer may do is what `user` may do.

    The secret is shown once, when it is made; only its SHA-256 (`digest`, hex) is kept, with
    its first characters (`prefix`) to tell tokens apart. A token is refused once `revoked_at`
    is set or `expires_at` has passed; `last_used_at` is when it last authenticated a request.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"token '{self.name}' of {self.user}"

    @property
    def is_active(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class WorkerSetting(models.Model):
    """An administrator's override of one worker of settings.MAGICBOX_WORKERS (edited in the
    admin by superusers only). Empty fields keep the setting's value.

    program: the program to run (a name looked up on the search path, or an absolute path).
    args: the argv after the program, replacing the adapter's default ({prompt}, {workdir} filled).
    env: variables set for every task of the worker ({"NAME": "value"}); values of names that
    look secret (KEY, TOKEN, …) are masked in everything stored.
    env_passthrough: more variables copied from the server's environment when set.
    max_parallel: this worker's task runs at once, over all processes.
    """

    worker = models.CharField(max_length=50, unique=True)
    program = models.CharField(max_length=500, blank=True)
    args = models.JSONField(null=True, blank=True, help_text='A JSON list of strings, e.g. ["-p", "{prompt}"]. Empty: the adapter\'s default.')
    env = models.JSONField(default=dict, blank=True, help_text='A JSON object, e.g. {"ANTHROPIC_MODEL": "claude-sonnet-4"}.')
    env_passthrough = models.JSONField(default=list, blank=True, help_text='A JSON list of variable names, e.g. ["HTTPS_PROXY"].')
    max_parallel = models.PositiveIntegerField(null=True, blank=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["worker"]

    def __str__(self) -> str:
        return f"settings of worker {self.worker}"


class CapturedDiff(models.Model):
    """A diff Magic Box captured (vcs.changes.diff) and keeps: a task's change, or an
    integration branch against its run's base.

    files: [{"path", "old_path" (renames), "status": "added" | "modified" | "deleted" |
    "renamed" | "copied" | "type changed", "added", "deleted" (lines; None for binary files),
    "binary", "start", "end" (the file's character range in `patch`; None if cut off)}].
    patch: `git diff -M`, at most PATCH_LIMIT characters (patch_truncated).
    """

    PATCH_LIMIT = 5_000_000

    files = models.JSONField(default=list)
    patch = models.TextField(blank=True)
    patch_truncated = models.BooleanField(default=False)
    lines_added = models.PositiveIntegerField(default=0)
    lines_deleted = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True

    def file_patch(self, path: str) -> str:
        """The part of the patch about `path` ("" if it is not there or was cut off)."""
        for entry in self.files:
            if entry["path"] == path and entry.get("start") is not None:
                return self.patch[entry["start"]:entry["end"]]
        return ""


class TaskChange(CapturedDiff):
    """The code a task run changed in the plan's workspace repository (its last attempt).

    branch: magicbox/run-<run>/<task>. start_commit: where the task began (the run's base, or
    the merge of its upstream tasks' branches); head_commit: the commit Magic Box made of the
    worktree when the task ended (start_commit if it changed nothing). files, patch: the diff
    from start to head (CapturedDiff).
    """

    task_run = models.OneToOneField(TaskRun, on_delete=models.CASCADE, related_name="change")
    branch = models.CharField(max_length=300)
    start_commit = models.CharField(max_length=64)
    head_commit = models.CharField(max_length=64)
    # {other task id: [paths git could not merge]} for tasks of the run that are neither upstream
    # nor downstream of this one, checked with `git merge-tree` when this change was captured.
    merge_conflicts = models.JSONField(default=dict, blank=True)
    captured_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"changes of {self.task_run}"


class LoopRound(models.Model):
    """One round of a review-and-fix loop (engine.loops): the review's verdict and findings.

    review: the review task's id. number: 1, 2, … verdict: APPROVE, REQUEST_CHANGES, REJECT, or
    "" when the answer had none. attempts: {task id: its attempt in this round} of the review and
    the tasks the round ran. cost_usd: their attempts' cost together (None when none reported one).
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="loop_rounds")
    review = models.CharField(max_length=100)
    number = models.PositiveIntegerField()
    verdict = models.CharField(max_length=20, blank=True)
    findings = models.TextField(blank=True)
    attempts = models.JSONField(default=dict)
    cost_usd = models.FloatField(null=True, blank=True)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "review", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "review", "number"], name="unique_loop_round")]

    def __str__(self) -> str:
        return f"round {self.number} of the loop of {self.review} in run #{self.run_id}"


class RoundChange(CapturedDiff):
    """What a task of a loop round changed in that round: a copy of its TaskChange as the round
    ended (its diff against the round before, since a fix continues from its own branch)."""

    round = models.ForeignKey(LoopRound, on_delete=models.CASCADE, related_name="changes")
    task_id = models.CharField(max_length=100)
    start_commit = models.CharField(max_length=64)
    head_commit = models.CharField(max_length=64)

    class Meta:
        ordering = ["round", "id"]


class IntegrationState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PushState(models.TextChoices):
    NONE = "", "not pushed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Integration(LeasedWork, CapturedDiff):
    """An "integrate" of a run: its successful tasks' branches merged, in dependency order, into
    magicbox/run-<run>/integration, stopping at the first conflict; then the workspace's check.
    files, patch (CapturedDiff): the integration branch against the run's base commit, once
    every branch merged. push_state / push_message: the push of the branch to the workspace's
    remote (workspace.push) after it succeeded: "" (not asked or not reached), succeeded or
    failed, with git's words (credentials masked).

    state (IntegrationState): queued -> running -> succeeded | failed; back to queued when its
    worker process stopped or died (it starts again from the run's base).
    merged: task ids merged so far. conflict: {"task", "files": [{"path", "hunks": [text]}]} of
    the merge that stopped it, or {}. check_exit_code / check_output: the check command's.
    """

    KIND = "integration"
    TRANSITIONS = {
        IntegrationState.QUEUED: {IntegrationState.RUNNING, IntegrationState.FAILED},
        IntegrationState.RUNNING: {IntegrationState.SUCCEEDED, IntegrationState.FAILED, IntegrationState.QUEUED},
    }
    TERMINAL = {IntegrationState.SUCCEEDED, IntegrationState.FAILED}

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="integrations")
    state = models.CharField(max_length=20, choices=IntegrationState.choices, default=IntegrationState.QUEUED, db_index=True)
    state_reason = models.TextField(blank=True)
    branch = models.CharField(max_length=300, blank=True)
    head_commit = models.CharField(max_length=64, blank=True)
    merged = models.JSONField(default=list)
    conflict = models.JSONField(default=dict, blank=True)
    check_command = models.JSONField(null=True, blank=True)
    check_exit_code = models.IntegerField(null=True, blank=True)
    check_output = models.TextField(blank=True)
    push_state = models.CharField(max_length=20, choices=PushState.choices, default=PushState.NONE, blank=True)
    push_message = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"integration #{self.pk} of run #{self.run_id}"

    def history_links(self) -> dict[str, int | None]:
        return {"run_id": self.run_id}

    def requeue_fields(self, now) -> dict:
        return {"merged": [], "conflict": {}, "head_commit": "", "check_exit_code": None, "check_output": "",
                "files": [], "patch": "", "patch_truncated": False, "lines_added": 0, "lines_deleted": 0,
                "push_state": PushState.NONE, "push_message": ""}
