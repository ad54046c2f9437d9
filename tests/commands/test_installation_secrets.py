"""An installation keeps its data private, has a secret key of its own, and refuses to be
reachable from other machines while it is insecure."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestration.management.commands.serve import check_exposure

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "Zq8-3vN_r7Lw2pXk9sYt4bHc6mJd1gFe5aUo0iQzR8xV2nBk7LcW3yTs"


def manage(data_dir: Path, *args: str, **extra_env: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY") and not k.startswith("DJANGO_")}
    env.update(MAGICBOX_DATA_DIR=str(data_dir), **extra_env)
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def print_key(data_dir: Path, **extra_env: str) -> str:
    return manage(data_dir, "shell", "-v0", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", **extra_env).strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_each_installation_generates_its_own_secret_key_and_keeps_it_private(tmp_path):
    first = print_key(tmp_path / "one")
    assert len(first) >= 50 and print_key(tmp_path / "one") == first, "kept across starts"
    assert (tmp_path / "one" / "secret-key").read_text().strip() == first
    assert mode(tmp_path / "one" / "secret-key") == 0o600 and mode(tmp_path / "one") == 0o700
    assert print_key(tmp_path / "two") != first, "another installation has another key"
    # A key set in the environment wins, and nothing is generated.
    assert print_key(tmp_path / "three", SECRET_KEY=STRONG_KEY) == STRONG_KEY
    assert not (tmp_path / "three" / "secret-key").exists()


def test_an_existing_data_directory_is_made_private_with_its_database(tmp_path):
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    for name in ("magicbox.sqlite3", "secret-key"):
        (data / name).write_text("")
        (data / name).chmod(0o644)
    (data / "secret-key").write_text(STRONG_KEY + "\n")
    manage(data, "migrate", "-v0")
    assert mode(data) == 0o700
    assert mode(data / "magicbox.sqlite3") == 0o600 and mode(data / "secret-key") == 0o600
    assert print_key(data) == STRONG_KEY, "the existing key is kept"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "magicbox.example.org"])
def test_serve_on_an_address_others_reach_refuses_debug_and_weak_keys(settings, host):
    settings.DEBUG, settings.SECRET_KEY = True, STRONG_KEY
    with pytest.raises(CommandError, match=f"refusing to listen on {host}.*DEBUG is on.*unset DEBUG"):
        call_command("serve", host=host, port=1, workers=0)
    settings.DEBUG = False
    for weak in ("magicbox-local-development-key-change-me-in-production", "django-insecure-" + STRONG_KEY, "short"):
        settings.SECRET_KEY = weak
        with pytest.raises(CommandError, match="SECRET_KEY is a default or weak key.*unset SECRET_KEY to use the generated one"):
            call_command("serve", host=host, port=1, workers=0)
    settings.SECRET_KEY = STRONG_KEY
    check_exposure(host)  # nothing to refuse


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_serve_on_a_loopback_address_allows_debug_and_any_key(settings, host):
    settings.DEBUG, settings.SECRET_KEY = True, "short"
    check_exposure(host)
