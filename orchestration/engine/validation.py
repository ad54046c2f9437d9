"""Schema validation off the event loop, with a time limit: a pathological schema cannot stall a worker.

Python's regular expressions hold the interpreter while they backtrack (`^(a+)+$` against 30
characters takes minutes), so a thread would stall the event loop all the same. Validation
runs in a helper process instead (plans.output_schema), started on first use and kept for
the next one; one that does not answer within MAGICBOX_VALIDATION_TIMEOUT seconds is killed, that one
validation fails with a message saying why, and the next starts a fresh helper.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import weakref

from django.conf import settings

log = logging.getLogger(__name__)

STREAM_LIMIT = 64 * 1024 * 1024  # bytes of one answer line (answers are short; a guard, not a budget)


class _Helper:
    """One helper process (plans.output_schema), answering one request at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> _Helper:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(settings.BASE_DIR),
               "MAGICBOX_PARENT_PID": str(os.getpid())}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orchestration.plans.output_schema",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            cwd=str(settings.BASE_DIR), env=env, limit=STREAM_LIMIT, start_new_session=True)
        return cls(proc)

    async def ask(self, result: str, schema: dict) -> list[str]:
        self.proc.stdin.write(json.dumps({"result": result, "schema": schema}).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise EOFError("it exited")
        return json.loads(line)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class Validator:
    """A pool of helper processes of one event loop: up to MAX_HELPERS validations at once (one
    pathological schema holds one helper, not the others' turn); idle helpers are kept."""

    MAX_HELPERS = max(2, os.cpu_count() or 2)

    def __init__(self) -> None:
        self._idle: list[_Helper] = []
        self._slots = asyncio.Semaphore(self.MAX_HELPERS)

    async def problems(self, result: str, schema: dict, timeout: float | None = None) -> list[str]:
        """Why `result` does not match `schema` (plans.output_schema.problems); [] if it does.

        A validation that takes longer than `timeout` seconds (MAGICBOX_VALIDATION_TIMEOUT by
        default) returns one problem saying so. Never raises for the schema's or result's sake.
        """
        timeout = settings.MAGICBOX_VALIDATION_TIMEOUT if timeout is None else timeout
        async with self._slots:
            helper = self._idle.pop() if self._idle else await _Helper.start()
            try:
                answer = await asyncio.wait_for(helper.ask(result, schema), timeout)
            except TimeoutError:
                await helper.kill()
                return [f"checking it against the schema took longer than {timeout:g} s, so it was stopped: a `pattern` "
                        "that backtracks (such as ^(a+)+$) or `uniqueItems` over a very long array can take for ever; "
                        "simplify the schema"]
            except (OSError, ValueError, EOFError) as error:
                await helper.kill()
                log.warning("the schema validation helper failed: %s", error)
                return [f"the schema validation helper failed ({error}); the result could not be checked"]
            except asyncio.CancelledError:
                await helper.kill()
                raise
            self._idle.append(helper)
            return answer

    async def close(self) -> None:
        """Stop the idle helper processes (new ones start on the next validation)."""
        while self._idle:
            await self._idle.pop().kill()


_validators: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Validator] = weakref.WeakKeyDictionary()


async def output_problems(result: str, schema: dict, timeout: float | None = None) -> list[str]:
    """Validate with this event loop's helper processes (see Validator.problems)."""
    loop = asyncio.get_running_loop()
    validator = _validators.get(loop)
    if validator is None:
        validator = _validators[loop] = Validator()
    return await validator.problems(result, schema, timeout)
