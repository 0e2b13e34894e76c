"""
The monitoring endpoints: `metrics` (Prometheus text format, read from the database at
scrape time) and `health` (200 or 503 with JSON saying what is wrong). Both answer only
staff or a bearer token (monitoring.access); neither is cached.
"""

import logging

from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from clickhouse_outbox.monitoring.access import ALLOWED, FORBIDDEN, access
from clickhouse_outbox.monitoring.health import Health, assess
from clickhouse_outbox.monitoring.prometheus import OutboxCollector
from clickhouse_outbox.monitoring.readings import read

log = logging.getLogger(__name__)


def refused(verdict):
    if verdict == FORBIDDEN:
        return JsonResponse({"error": "staff only"}, status=403)
    response = JsonResponse({"error": "sign in as staff, or send the monitoring token as "
                                      "'Authorization: Bearer <token>'"}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="clickhouse_outbox"'
    return response


@never_cache
@require_GET
def metrics(request):
    verdict = access(request)
    if verdict != ALLOWED:
        return refused(verdict)
    registry = CollectorRegistry()
    registry.register(OutboxCollector())
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))  # text format, or OpenMetrics if asked
    try:
        body = encode(registry)
    except DatabaseError as exc:  # the scrape fails (Prometheus marks the target down) and says why, briefly
        log.warning("clickhouse_outbox: the metrics could not be read: %s", type(exc).__name__)
        return HttpResponse(f"the outbox could not be read: {type(exc).__name__}\n", status=503,
                            content_type="text/plain; charset=utf-8")
    return HttpResponse(body, content_type=content_type)


@never_cache
@require_GET
def health(request):
    verdict = access(request)
    if verdict != ALLOWED:
        return refused(verdict)
    try:
        result = assess(read())
    except DatabaseError as exc:
        log.warning("clickhouse_outbox: the health could not be read: %s", type(exc).__name__)
        result = Health([f"the outbox's database could not be read ({type(exc).__name__})"])
    return JsonResponse(result.as_dict(), status=200 if result.healthy else 503)
