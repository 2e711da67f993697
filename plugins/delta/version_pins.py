"""Delta versions pinned for the retrievals inside a block: :func:`pinned_versions` replays a retrieval
on the versions it read (reproducible training sets); the offline store reads :func:`current_pins`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping

_version_pins: contextvars.ContextVar[Mapping[str, int | None] | None] = contextvars.ContextVar(
    "delta_version_pins", default=None
)


@contextlib.contextmanager
def pinned_versions(versions: Mapping[str, int | None]) -> Iterator[None]:
    """Read the named sources at these Delta versions inside the block (reproducible training sets).

    ``versions`` is ``job.source_versions`` of an earlier retrieval, or
    ``fs_platform.plugins.delta.storage.recorded_source_versions(saved_dataset.storage)``.
    """
    token = _version_pins.set({**(_version_pins.get() or {}), **versions})
    try:
        yield
    finally:
        _version_pins.reset(token)


def current_pins() -> Mapping[str, int | None]:
    """Source name -> version pinned by the enclosing :func:`pinned_versions` blocks (empty outside)."""
    return _version_pins.get() or {}
