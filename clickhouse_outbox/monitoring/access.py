"""
Who may read the metrics and the health: signed-in active staff, or a caller holding
CLICKHOUSE_OUTBOX_MONITORING_TOKEN in an `Authorization: Bearer` header (a Prometheus
scrape, a Kubernetes probe). The token is never read from the URL, where proxies and access
logs would keep it; it is compared in constant time (on digests, so its length is not told).
"""

import hashlib
import hmac

from clickhouse_outbox import conf

ALLOWED, UNAUTHENTICATED, FORBIDDEN = "allowed", "unauthenticated", "forbidden"


def access(request):
    """ALLOWED; UNAUTHENTICATED (no or a wrong token, not signed in: 401); FORBIDDEN (signed in, not staff: 403)."""
    token = conf.value("CLICKHOUSE_OUTBOX_MONITORING_TOKEN")
    given = bearer_token(request)
    if token and given is not None and same(given, token):
        return ALLOWED
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return ALLOWED
    if user is not None and user.is_authenticated and given is None:
        return FORBIDDEN
    return UNAUTHENTICATED


def bearer_token(request):
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def same(given, token):
    digest = lambda text: hashlib.sha256(text.encode("utf-8")).digest()  # noqa: E731
    return hmac.compare_digest(digest(given), digest(token))
