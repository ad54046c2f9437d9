"""Personal API tokens: made and revoked by their owner, stored hashed, shown once.

A token is "mbx_" and 43 URL-safe characters (32 random bytes). Requests send it as
`Authorization: Bearer <token>`. Only its SHA-256 is stored (models.ApiToken.digest), so a
database leak gives no usable token; lookup is by that digest.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from orchestration.models import ApiToken

PREFIX = "mbx_"
# What a request without a usable token is told, by the HTTP API and the MCP endpoint alike.
UNAUTHENTICATED = ("send a valid token: `Authorization: Bearer mbx_…` (make one on /account/tokens/; "
                   "revoked or expired tokens are refused)")
MAX_TOKENS = 50  # active tokens a user may hold
MAX_DAYS = 3650


class TokenRefused(ValueError):
    """A token cannot be made as asked; the message says why and what to do."""


def digest_of(secret: str) -> str:
    """The SHA-256 (hex) a token is stored as."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def issue(user, name: str, days: int | None = None) -> tuple[ApiToken, str]:
    """Make a token named `name` for `user`, valid for `days` days (None: until revoked).
    Returns (the stored token, its secret: shown once, never stored). Raises TokenRefused for an
    empty or taken name, days out of 1..MAX_DAYS, or too many active tokens."""
    name = name.strip()
    if not name or len(name) > 100:
        raise TokenRefused("Give the token a name of 1 to 100 characters, e.g. the tool that will use it (ci, laptop).")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise TokenRefused(f"A token lasts 1 to {MAX_DAYS} days, or leave it empty to keep it until you revoke it.")
    active = [t for t in ApiToken.objects.filter(user=user, revoked_at__isnull=True) if t.is_active]
    if any(t.name == name for t in active):
        raise TokenRefused(f"You already have a token named '{name}': revoke it first, or choose another name.")
    if len(active) >= MAX_TOKENS:
        raise TokenRefused(f"You have {len(active)} active tokens, the most allowed: revoke some first.")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=secret[: len(PREFIX) + 6], digest=digest_of(secret),
                                    expires_at=timezone.now() + timedelta(days=days) if days else None)
    return token, secret


def authenticate(secret: str) -> ApiToken | None:
    """The active token `secret` is, with its user loaded (last_used_at updated), or None for an
    unknown, revoked or expired token or an inactive user."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=digest_of(secret)).first()
    if token is None or not token.is_active or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


def revoke(user, token_id: int) -> bool:
    """Revoke `user`'s token `token_id`; False when it is not theirs or was revoked already."""
    return bool(ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now()))
