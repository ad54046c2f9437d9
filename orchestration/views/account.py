"""A user's own page: their personal API tokens (orchestration.api.tokens)."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from orchestration.api import tokens
from orchestration.models import ApiToken


@never_cache  # the page that shows a new token's secret is never stored
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    """GET /account/tokens/: the user's API tokens (name, start, made, expires, last used,
    revoked). POST action=create (name, days: empty for no end) makes one and shows its secret
    this once; POST action=revoke (token) revokes one of theirs."""
    new_secret = ""
    status = 200
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            token = str(request.POST.get("token", ""))
            if tokens.revoke(request.user, int(token) if token.isascii() and token.isdecimal() else 0):
                messages.success(request, "Token revoked: requests with it are refused from now on.")
            else:
                messages.error(request, "That token is not yours, or it was revoked already.")
            return redirect("token-list")
        days_text = request.POST.get("days", "").strip()
        try:
            days = int(days_text) if days_text else None
            _, new_secret = tokens.issue(request.user, request.POST.get("name", ""), days)
        except ValueError as error:  # tokens.TokenRefused, or days that are no number
            messages.error(request, str(error) if isinstance(error, tokens.TokenRefused) else "Days must be a whole number.")
            status = 400
    typed = request.POST if status == 400 else {}  # a refused form comes back as it was typed
    return render(request, "account/tokens.html", {"tokens": ApiToken.objects.filter(user=request.user), "new_secret": new_secret,
                                                   "typed_name": typed.get("name", ""), "typed_days": typed.get("days", "")},
                  status=status)
