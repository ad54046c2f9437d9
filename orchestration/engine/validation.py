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


class Validator:
    """One helper process validating results against schemas, one request at a time."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _helper(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "orchestration.plans.output_schema",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                cwd=str(settings.BASE_DIR), env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(settings.BASE_DIR)},
                limit=STREAM_LIMIT, start_new_session=True)
        return self._proc

    async def problems(self, result: str, schema: dict, timeout: float | None = None) -> list[str]:
        """Why `result` does not match `schema` (plans.output_schema.problems); [] if it does.

        A validation that takes longer than `timeout` seconds (MAGICBOX_VALIDATION_TIMEOUT by
        default) returns one problem saying so. Never raises for the schema's or result's sake.
        """
        timeout = settings.MAGICBOX_VALIDATION_TIMEOUT if timeout is None else timeout
        async with self._lock:
            proc = await self._helper()
            try:
                proc.stdin.write(json.dumps({"result": result, "schema": schema}).encode() + b"\n")
                answer = await asyncio.wait_for(self._answer(proc), timeout)
            except TimeoutError:
                await self._kill()
                return [f"checking it against the schema took longer than {timeout:g} s, so it was stopped: a `pattern` "
                        "that backtracks (such as ^(a+)+$) or `uniqueItems` over a very long array can take for ever; "
                        "simplify the schema"]
            except (OSError, ValueError, EOFError) as error:
                await self._kill()
                log.warning("the schema validation helper failed: %s", error)
                return [f"the schema validation helper failed ({error}); the result could not be checked"]
            except asyncio.CancelledError:
                await self._kill()
                raise
        return answer

    @staticmethod
    async def _answer(proc: asyncio.subprocess.Process) -> list[str]:
        await proc.stdin.drain()
        line = await proc.stdout.readline()
        if not line:
            raise EOFError("it exited")
        return json.loads(line)

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def close(self) -> None:
        """Stop the helper process (it is started again on the next validation)."""
        await self._kill()


_validators: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Validator] = weakref.WeakKeyDictionary()


async def output_problems(result: str, schema: dict, timeout: float | None = None) -> list[str]:
    """Validate with this event loop's helper process (see Validator.problems)."""
    loop = asyncio.get_running_loop()
    validator = _validators.get(loop)
    if validator is None:
        validator = _validators[loop] = Validator()
    return await validator.problems(result, schema, timeout)
