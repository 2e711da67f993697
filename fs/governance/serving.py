"""Feature-server instrumentation: request latency into the platform registry, and PII refusals.

    from feast.feature_server import get_app
    app = instrument_feature_server(get_app(store))

The endpoint label is the route path (a fixed set), never the request body.
"""

from __future__ import annotations

import time

from fs.governance import metrics


def instrument_feature_server(app):
    """Add a middleware to Feast's FastAPI feature server app; returns the same app."""

    @app.middleware("http")
    async def _observe(request, call_next):
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            metrics.SERVING_LATENCY.labels(endpoint, str(status)).observe(time.perf_counter() - started)
            if status == 403 and endpoint == "/get-online-features":
                metrics.PII_READS_DENIED.labels("server").inc()

    return app
