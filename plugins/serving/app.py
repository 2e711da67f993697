"""The ``fs serve`` ASGI app: Feast's ``/get-online-features`` contract on the fast read path.

    POST /get-online-features   Feast's request and response JSON (a caller switches by changing the URL)
    GET  /health                liveness: the process answers
    GET  /ready                 readiness: registry loaded, Redis answers, breaker closed
    GET  /metrics               Prometheus exposition

A request is resolved to a plan once per request shape (feature service or feature list, and
``full_feature_names``); a plan is a ``FastReader`` plus the roles its PII features need. Plans are
dropped when the registry changes (checked every ``registry_refresh_s`` off the event loop); requests
in flight finish on the plan they started with.

Holding the SLA: every request has a deadline (``deadline_ms``); the Redis read gets what is left of
it. A read that fails or times out does not fail the request: the affected features come back with
status INVALID (header ``X-FS-Degraded`` names the views) and count against a circuit breaker, which,
once open, answers without touching Redis until one probe read succeeds. A worker with
``max_inflight`` requests in progress sheds more with 503 + ``Retry-After`` instead of queueing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import timedelta

import orjson
from feast import FeatureStore
from feast.errors import FeastError

from fs_platform.errors import FsError, InvalidArgument
from fs_platform.feast_compat import online_store
from fs_platform.observability import span
from fs_platform.plugins.kafka_ingest.resilience import BreakerState, CircuitBreaker
from fs_platform.plugins.serving import metrics, served_log
from fs_platform.plugins.serving.access import authenticate, check_access
from fs_platform.plugins.serving.encode import response_json
from fs_platform.plugins.serving.http_io import HttpError, loop_time, read_body
from fs_platform.plugins.serving.plans import Plan
from fs_platform.plugins.serving.settings import ServeSettings, callers

log = logging.getLogger(__name__)
access_log = logging.getLogger("fs.serve.access")

_JSON = [(b"content-type", b"application/json")]
_MAX_PLANS = 1024
DIRECT_WAIT_S = 0.005  # the longest a direct read may hold up a worker's other connections


class ServeApp:
    """One worker's server state; an ASGI 3 callable."""

    def __init__(self, store: FeatureStore, settings: ServeSettings):
        self.store = store
        self.settings = settings
        self.callers = callers(settings.auth)
        self.plans: dict[tuple, Plan] = {}
        self.breaker = CircuitBreaker("redis", settings.breaker_failures, settings.breaker_reset_s)
        self._probing = False
        self.inflight = 0
        self._latency: dict[tuple[str, int], object] = {}  # (feature service, status) -> histogram child
        self.draining = False
        self.served_log = served_log.for_serve(store, store.repo_path, settings.served_log)  # None: off
        self._registry_version = None
        self._refresher: asyncio.Task | None = None
        # The server refreshes the registry itself, off the event loop; Feast's TTL would refresh it
        # synchronously inside a request.
        if hasattr(store.registry, "cached_registry_proto_ttl"):
            store.registry.cached_registry_proto_ttl = timedelta(0)
        self._registry_version = self._version()

    # --- plans ---------------------------------------------------------------------------------
    def warm(self) -> None:
        """Compile a plan for every feature service (called before forking workers)."""
        for service in self.store.list_feature_services():
            try:
                self.plan({"feature_service": service.name})
            except HttpError as e:
                log.warning("feature service %s cannot be served: %s", service.name, e)

    def plan(self, body: dict) -> Plan:
        service = body.get("feature_service")
        full = bool(body.get("full_feature_names", False))
        features = body.get("features") or []
        if service:
            key = ("s", service, full)
        else:
            if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
                raise HttpError(400, "features must be a list of 'view:feature' strings")
            if not features:
                raise HttpError(400, "the request names neither feature_service nor features")
            key = ("f", tuple(features), full)
        plan = self.plans.get(key)
        if plan is None:
            if len(self.plans) >= _MAX_PLANS:
                self.plans.clear()
            try:
                if service:
                    plan = Plan(
                        self.store, self.store.get_feature_service(service, allow_cache=True), full, service
                    )
                else:
                    plan = Plan(self.store, list(features), full, "features")
            except FeastError as e:
                raise HttpError(e.http_status_code(), str(e)) from None
            except (FsError, ValueError, KeyError) as e:
                raise HttpError(400, str(e)) from None
            self.plans[key] = plan
        return plan

    def _version(self):
        proto = getattr(self.store.registry, "cached_registry_proto", None)
        return None if proto is None else proto.last_updated.ToMicroseconds()

    def refresh_registry(self) -> bool:
        """Re-read the registry (blocking: run it in a thread); True if it changed."""
        self.store.registry.refresh(self.store.project)
        version = self._version()
        if version == self._registry_version:
            return False
        self._registry_version = version
        self.plans = {}  # requests in flight keep the plan objects they hold
        metrics.REGISTRY_REFRESHES.inc()
        log.info("registry changed: request plans will be rebuilt")
        return True

    async def _refresh_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.registry_refresh_s)
            try:
                await loop.run_in_executor(None, self.refresh_registry)
            except Exception as e:  # a registry hiccup must not stop serving the current plans
                log.warning("registry refresh failed (serving the previous definitions): %s", e)

    # --- lifecycle (called by fs serve's HTTP server, or by the ASGI lifespan) --------------------
    def startup(self) -> None:
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def shutdown(self) -> None:
        """After the requests in flight have finished: write the queued served-log rows, stop refreshing."""
        self.draining = True
        if self.served_log is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, self.served_log.close, self.settings.shutdown_grace_s
            )
        if self._refresher:
            self._refresher.cancel()

    # --- one request, whatever the transport -----------------------------------------------------
    async def handle(
        self,
        method: str,
        path: str,
        headers: list,
        body: bytes | HttpError,
        start: float,
        direct: bool = False,
    ) -> tuple[int, list, bytes]:
        """Answer one request: ``(status, response headers, body)``. ``headers`` are the request's as
        ``(lower-case name, value)`` bytes pairs; ``body`` is the whole request body, or the
        ``HttpError`` that reading it ended in; ``start`` the ``time.monotonic()`` it arrived at (the
        deadline counts from there). ``direct``: the worker has nothing else to do, so the Redis read
        may block the loop for its round trip (see ``_fetch``); the coroutine then finishes without
        suspending."""
        label = "-"
        if path == "/get-online-features":
            if self.inflight >= self.settings.max_inflight:
                metrics.SHED.inc()
                status, out, extra = 503, b'{"detail":"server busy, retry"}', [(b"retry-after", b"1")]
            else:
                self.inflight += 1
                try:
                    if self.settings.otel_spans:
                        with span("fs.serve.request") as sp:
                            status, out, extra, label = await self._online(
                                method, headers, body, start, direct
                            )
                            sp.set_attribute("feature_service", label)
                            sp.set_attribute("http.status_code", status)
                    else:
                        status, out, extra, label = await self._online(method, headers, body, start, direct)
                finally:
                    self.inflight -= 1
        elif path == "/health":
            status, out, extra = 200, b'{"status":"ok"}', []
        elif path == "/ready":
            status, out, extra = await self._ready()
        elif path == "/metrics":
            status, out = 200, metrics.exposition()
            extra = [(b"content-type", b"text/plain; version=0.0.4")]
        else:
            status, out, extra = 404, b'{"detail":"not found"}', []
        response_headers = (extra if path == "/metrics" else _JSON + extra) + [
            (b"content-length", str(len(out)).encode())
        ]
        elapsed = time.monotonic() - start
        if path == "/get-online-features":
            child = self._latency.get((label, status))
            if child is None:  # labels() is a dict lookup behind a lock: resolved once per (service, status)
                if len(self._latency) > 4096:
                    self._latency.clear()
                child = self._latency[(label, status)] = metrics.REQUEST_SECONDS.labels(
                    path, label, str(status)
                )
            child.observe(elapsed)
        sample = self.settings.access_log_sample
        if sample and random.random() < sample:
            access_log.info("%s %s %d %.2fms service=%s", method, path, status, elapsed * 1e3, label)
        return status, response_headers, out

    # --- ASGI (for people who run their own server; fs serve does not go through it) --------------
    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            start = time.monotonic()
            try:
                async with asyncio.timeout_at(loop_time(start + self.settings.deadline_ms / 1000)):
                    body = await read_body(scope, receive, self.settings.max_body_bytes)
            except TimeoutError:
                body = HttpError(408, "request body not received within the deadline")
            except HttpError as e:
                body = e
            method, path = scope["method"], scope["path"]
            status, headers, out = await self.handle(method, path, scope["headers"], body, start)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": out})
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _online(self, method: str, headers: list, raw: bytes | HttpError, start: float, direct: bool):
        settings = self.settings
        deadline = start + settings.deadline_ms / 1000
        label = "-"
        try:
            if method != "POST":
                raise HttpError(405, "use POST", [(b"allow", b"POST")])
            caller = authenticate(self.callers, headers)
            if isinstance(raw, HttpError):
                raise raw
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise HttpError(400, f"request body is not JSON: {e}") from None
            if not isinstance(body, dict):
                raise HttpError(400, "request body must be a JSON object")
            if body.get("include_feature_view_version_metadata"):
                raise HttpError(400, "include_feature_view_version_metadata is not supported by fs serve")
            plan = self.plan(body)
            label = plan.label
            check_access(plan, caller)
            entities = body.get("entities")
            if not isinstance(entities, dict):
                raise HttpError(400, "entities must be an object of column name -> list of values")
            n = max((len(v) for v in entities.values() if isinstance(v, list)), default=0)
            if n > settings.max_entities:
                raise HttpError(413, f"{n} entity rows; at most {settings.max_entities} per request")
            try:
                request = plan.reader.prepare(entities)
            except InvalidArgument as e:
                raise HttpError(400, str(e)) from None
            except FsError as e:  # a key of the wrong type for the store
                raise HttpError(400, str(e)) from None
            plan.entities.observe(request.n)
            replies, why = await self._fetch(plan, request, deadline, direct)
            served = plan.reader.assemble(request, replies, why=why or "read failed")
            log_ = self.served_log
            if log_ is not None and random.random() < log_.rate:  # O(1) enqueue, never blocks or raises
                log_.offer(headers, label, len(plan.reader.names), served)
            headers = []
            if served.failed:
                for view, reason in served.failed.items():
                    metrics.VIEW_FAILURES.labels(view, reason.split(":")[0]).inc()
                headers.append((b"x-fs-degraded", ",".join(sorted(served.failed)).encode()))
            return 200, response_json(served), headers, label
        except HttpError as e:
            return e.status, orjson.dumps({"detail": e.detail}), e.headers, label

    async def _fetch(self, plan: Plan, request, deadline: float, direct: bool = False):
        """The one Redis read inside what is left of the deadline, behind the breaker. ``direct``: try
        the blocking read first (at most ``DIRECT_WAIT_S`` of the loop's time; with the breaker closed
        only); when it cannot answer, the pipelined read, with its retries, as for any request."""
        breaker = self.breaker
        if not breaker.allow() or (breaker.state is BreakerState.HALF_OPEN and self._probing):
            return None, "online store unavailable (breaker open)"
        probe = breaker.state is BreakerState.HALF_OPEN
        self._probing = probe
        t0 = time.perf_counter()
        try:
            replies = None
            if direct and breaker.state is BreakerState.CLOSED:
                wait = min(DIRECT_WAIT_S, deadline - time.monotonic())
                replies = plan.reader.fetch_direct(request, wait) if wait > 0 else None
                if replies is not None:
                    metrics.DIRECT_READS.inc()
            if replies is None:
                if direct:  # leave the eager step (``http_server.run_eagerly``): timeouts need a task
                    await asyncio.sleep(0)
                replies = await plan.reader.fetch(request, loop_time(deadline))
        except TimeoutError:
            self._failed()
            return None, "online store timeout (deadline)"
        except FsError as e:
            self._failed()
            return None, f"online store unavailable: {type(e).__name__}"
        finally:
            if probe:
                self._probing = False
            metrics.REDIS_SECONDS.observe(time.perf_counter() - t0)
        if breaker.state is not BreakerState.CLOSED:
            metrics.BREAKER_OPEN.set(0)
        breaker.success()
        return replies, None

    def _failed(self) -> None:
        self.breaker.failure()
        if self.breaker.state is BreakerState.OPEN:
            metrics.BREAKER_OPEN.set(1)

    async def _ready(self) -> tuple[int, bytes, list]:
        problems = []
        if self.draining:
            problems.append("shutting down")
        if self.breaker.state is BreakerState.OPEN:
            problems.append("redis breaker open")
        else:
            try:
                state = online_store(self.store).state(self.store.config)
                client, _ = state.async_client()
                async with asyncio.timeout(0.25):
                    await client.ping()
            except Exception as e:
                problems.append(f"redis not answering ({type(e).__name__})")
        body = orjson.dumps({"ready": not problems, "problems": problems, "plans": len(self.plans)})
        return (503 if problems else 200), body, []


def create_app(repo: str | None = None, env: str = "dev", settings: ServeSettings | None = None) -> ServeApp:
    """The ASGI app for running under your own server:
    ``uvicorn --factory fs_platform.plugins.serving.app:create_app``
    (repo and env from ``$FS_REPO`` / ``$FS_ENV`` when not given)."""
    import os
    from pathlib import Path

    from fs_platform.platform import Platform
    from fs_platform.plugins.serving.settings import load

    platform = Platform(
        repo or os.environ.get("FS_REPO") or "feature_repo", env=os.environ.get("FS_ENV", env)
    )
    app = ServeApp(platform.store, settings or load(Path(platform.repo_path)))
    app.warm()
    return app
