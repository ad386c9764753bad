"""/metrics (Prometheus, from METRICS_ALLOWED_IPS only), /healthz and /readyz. Thin."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ops.metrics import CONTENT_TYPE, metrics_text
from ops.readiness import readiness_check


def _allowed(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


@login_not_required
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrapes gunicorn directly. A request that came through the console's nginx
    (which always sets X-Forwarded-Proto) reaches Django from 127.0.0.1 whoever sent it, so it
    is refused whatever its address: the public site never serves the platform's figures."""
    proxied = "HTTP_X_FORWARDED_PROTO" in request.META
    if proxied or not _allowed(request.META.get("REMOTE_ADDR", "")):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)


@login_not_required
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """The process answers; touches nothing else."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    checks = readiness_check()
    failed = sorted(name for name, state in checks.items() if state != "ok")
    body = {"status": "ok" if not failed else "unavailable", "failed": failed, "checks": checks}
    return JsonResponse(body, status=200 if not failed else 503)
