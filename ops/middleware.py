"""The request id (X-Request-ID from the console nginx, or a new one) on every response and
log line, and the web's latency histogram."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from ops import request_id
from ops.metrics import request_observe


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        rid = request_id.request_id_pick(header=request.headers.get("X-Request-ID"))
        request.request_id = rid  # type: ignore[attr-defined]
        token = request_id.current.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id.current.reset(token)
        response["X-Request-ID"] = rid
        request_observe(
            method=request.method or "",
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response
