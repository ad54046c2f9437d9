"""How long the plan editor of a large plan takes to render (server side), and how big it is.

For each size (default 200, 1,000 and 2,000 tasks, 2,000 being the most a plan may hold) a
fresh process creates, in a temporary SQLite database, a plan of shell tasks in layers of 25,
each task depending on up to three tasks of the layer before, then times through Django's test
client:

- open: GET /plans/<id>/edit/, the page an Author opens (server time, HTML bytes);
- check: the as-you-type validation POST of the whole form that the page sends after a
  keystroke (server time, response bytes).

It prints a table of median (min–max) seconds over --repeat renders, the sizes in bytes, and
the process's peak resident memory growth over the renders (MiB; from getrusage, so it counts
the largest render, not their sum).

    .venv/bin/python bench/editor.py [--sizes 200,1000,2000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spread import spread  # bench/spread.py (this script's directory is on sys.path)
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.large_plans import layered_plan  # noqa: E402 (after the path is set)


def form_data(state) -> dict[str, object]:
    """The fields a browser posts from an editor showing `state` (an EditorState)."""
    from dataclasses import asdict

    data: dict[str, object] = {k: v for k, v in asdict(state).items() if isinstance(v, str)}
    data.update({"tasks-count": str(len(state.tasks)), "contracts-count": str(len(state.contracts)),
                 "points-count": str(len(state.points)), "action": "validate"})
    for n, row in enumerate(state.tasks):
        for key, value in asdict(row).items():
            data[f"tasks-{n}-{key}"] = [str(p) for p in value] if isinstance(value, list) else value
    return data


def measure(size: int, repeat: int) -> dict:
    """Time `repeat` editor renders and validations of a `size`-task plan, in this process."""
    os.environ["MAGICBOX_DATA_DIR"] = tempfile.mkdtemp(prefix="magicbox-editor-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from orchestration.plans.editor import state_from_spec
    from orchestration.plans.store import import_text

    call_command("migrate", verbosity=0)
    revision, _ = import_text(json.dumps(layered_plan(size)), "large.yaml")
    client = Client()
    client.force_login(User.objects.create_superuser("bench", password="bench-password-1"))
    url = f"/plans/{revision.plan_id}/edit/"
    # Encoded as a browser (htmx) sends a form; the test client would send multipart.
    post = urlencode(form_data(state_from_spec(revision.spec)) | {"base_revision": str(revision.number)}, doseq=True)
    rss_before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    result: dict = {"tasks": size, "open": [], "check": []}
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        result["open"].append(time.perf_counter() - began)
        assert response.status_code == 200, response.status_code
        result["open_bytes"] = len(response.content)
        began = time.perf_counter()
        response = client.post(url, post, content_type="application/x-www-form-urlencoded")
        result["check"].append(time.perf_counter() - began)
        assert response.status_code == 200, response.status_code
        result["check_bytes"] = len(response.content)
    result["peak_mib"] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before) / 2**20
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,1000,2000", help="comma-separated task counts (at most 2000 each)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one size, in this process; prints JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeat)))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        # A process per size, so each peak memory figure is that size's own.
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", str(size), "--repeat", str(args.repeat)],
                              cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"plan editor, {args.repeat} repeats; seconds are median (min–max) of server time")
    print(f"{'tasks':>6} | {'open (s)':>24} | {'HTML bytes':>12} | {'check as you type (s)':>24} | {'reply bytes':>12} | {'peak +MiB':>9}")
    for r in rows:
        print(f"{r['tasks']:>6} | {spread(r['open'], 3):>24} | {r['open_bytes']:>12,} | {spread(r['check'], 3):>24} | "
              f"{r['check_bytes']:>12,} | {r['peak_mib']:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
