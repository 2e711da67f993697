"""``fs serve``: the online feature server. ``create_app`` is the ASGI factory for running it under
your own server; ``server.serve`` runs the master and its workers (``fs serve``)."""

from fs_platform.plugins.serving.app import ServeApp, create_app

__all__ = ["ServeApp", "create_app"]
