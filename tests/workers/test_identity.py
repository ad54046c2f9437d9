"""workers.identity: `<cli> --version` asked once per program file, its answer read as a version."""
from __future__ import annotations

import asyncio

from orchestration.workers import identity


def test_a_version_is_read_from_what_each_cli_prints():
    assert identity.version_text(["2.1.197 (Claude Code)"]) == "2.1.197"
    assert identity.version_text(["codex-cli 0.171.0"]) == "0.171.0"
    assert identity.version_text(["", "no digits here"]) == "no digits here"
    assert identity.version_text([]) == ""


def test_the_version_is_asked_once_per_program_and_again_after_an_upgrade(tmp_path):
    calls = tmp_path / "calls"
    program = tmp_path / "fakecli"
    program.write_text(f"#!/bin/sh\necho x >> {calls}\necho 'fakecli 1.2.3'\n")
    program.chmod(0o755)
    identity.forget_versions()

    first = [asyncio.run(identity.cli_version(str(program), "/usr/bin:/bin")) for _ in range(3)]
    program.write_text(f"#!/bin/sh\necho x >> {calls}\necho 'fakecli 1.3.0'\n")  # a new mtime: upgraded

    assert first == ["1.2.3"] * 3
    assert asyncio.run(identity.cli_version(str(program), "/usr/bin:/bin")) == "1.3.0"
    assert calls.read_text().count("x") == 2
    assert asyncio.run(identity.cli_version(str(tmp_path / "missing"), "/usr/bin:/bin")) == ""
