"""The `shell` worker: runs a task's `command` argv directly (never through a shell)."""
from __future__ import annotations

from orchestration.workers.base import Invocation, TaskContext, WorkerAdapter


class ShellAdapter(WorkerAdapter):
    """Runs `ctx.command`; stdout and stderr are shown as they come, stdout is the result.

    The task gets MAGICBOX_UPSTREAM_DIR (a directory of `<task_id>.result` files), MAGICBOX_TASK_ID
    and MAGICBOX_PROMPT (the composed description) in its environment, and PYTHONUNBUFFERED=1 so
    a Python program's output is shown as it prints it, not only when it ends (Python
    block-buffers output to a pipe); the worker's `env` setting may say otherwise.
    """

    def build(self, ctx: TaskContext) -> Invocation:
        if not ctx.command:
            raise ValueError(f"task {ctx.task_id}: the shell worker needs a command")
        program = self.find_program(ctx.command[0])
        env = dict(ctx.base_env)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.config.env)
        env.update(
            {
                "HOME": str(ctx.home),
                "TMPDIR": str(ctx.tmpdir),
                "MAGICBOX_TASK_ID": ctx.task_id,
                "MAGICBOX_UPSTREAM_DIR": str(ctx.upstream_dir),
                "MAGICBOX_PROMPT": ctx.prompt[:100_000],
            }
        )
        return Invocation(argv=[program, *ctx.command[1:]], env=env, cwd=ctx.workdir)
