"""``/metrics`` (Prometheus text format of the platform registry) and ``/health`` (JSON; HTTP 200
when ok, 503 when starting, degraded or stopped) for one ingestor, on a daemon thread."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fs_platform.observability import REGISTRY


def serve(ingestor, port: int, addr: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the endpoints; ``server.shutdown()`` stops them. Port 0 picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path == "/metrics":
                body, ctype, code = generate_latest(REGISTRY), CONTENT_TYPE_LATEST, 200
            elif self.path in ("/health", "/healthz"):
                h = ingestor.health()
                body = json.dumps(
                    {
                        "status": h.status,
                        "breakers": h.breakers,
                        "assigned_partitions": h.assigned,
                        "last_poll_age_s": h.last_poll_age_s,
                        "stalled_writes": h.stalled,
                    }
                ).encode()
                ctype, code = "application/json", 200 if h.healthy else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes every few seconds: keep them out of the logs
            pass

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fs-ingest-http", daemon=True).start()
    return server
