"""Feature-server instrumentation: request latency into the platform registry, and refusals.

    from feast.feature_server import get_app
    app = instrument_feature_server(get_app(store))   # serve this ASGI app (uvicorn, gunicorn)

It wraps the whole ASGI app rather than adding a FastAPI middleware: Feast turns errors (a
permission denial is a 403) into responses in Starlette's outermost error layer, which an inner
middleware never sees. The endpoint label is the matched route (a fixed set), else "unmatched".
"""

from __future__ import annotations

import time

from fs_platform.governance import metrics


class _Instrumented:
    def __init__(self, app):
        self.app = app

    def __getattr__(self, name):  # keep the FastAPI app's attributes reachable (state, routes, ...)
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def capture(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            metrics.SERVING_LATENCY.labels(endpoint, str(status[0])).observe(time.perf_counter() - started)
            if status[0] == 403 and endpoint == "/get-online-features":
                metrics.PII_READS_DENIED.labels("server").inc()


def instrument_feature_server(app):
    """The feature server ``app`` wrapped so every HTTP request is timed in ``REGISTRY``."""
    return _Instrumented(app)
