"""Git for the plan's workspace: repositories, task branches and worktrees, captured changes,
collisions between tasks and the integration of their branches."""
