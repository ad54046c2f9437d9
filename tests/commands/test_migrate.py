"""A fresh database gets role groups that already carry their permissions."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_first_migrate_of_a_fresh_database_gives_each_role_its_permissions(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("DJANGO_")}
    env["MAGICBOX_DATA_DIR"] = str(tmp_path / "fresh")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    counts = subprocess.run(
        [*manage, "shell", "-v0", "-c", "from django.contrib.auth.models import Group; "
         "print(sorted((g.name, sorted(g.permissions.values_list('codename', flat=True))) for g in Group.objects.all()))"],
        cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True).stdout
    assert "('Viewers', ['view_plan', 'view_planrevision', 'view_prompttemplate', 'view_run', 'view_taskrun'])" in counts
    assert "'operate_run'" in counts and "'change_plan'" in counts
