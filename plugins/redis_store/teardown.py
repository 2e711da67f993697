"""Deleting a view's or a project's online keys (``fs apply`` removing a view, ``fs teardown``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from feast import FeatureView

from fs_platform.aggregation.spec import is_aggregation
from fs_platform.plugins.redis_store.connection import translated
from fs_platform.plugins.redis_store.state import StoreState
from fs_platform.plugins.redis_store.tile_store import MARKS

logger = logging.getLogger(__name__)


def delete_views(state: StoreState, tables: Sequence[FeatureView]) -> None:
    """Every key of ``tables`` (rows or tiles and their offset marks) and their registered schemas."""
    for table in tables:
        deleted = delete_matching(state, state.layout.view_pattern(table.name))
        if is_aggregation(table):  # and the offset marks beside its tiles
            delete_matching(state, state.layout.view_pattern(table.name) + MARKS)
        with translated(state.endpoint):
            stale = [
                f
                for f in state.client.hkeys(state.layout.schemas_key)
                if f.decode().rsplit(":", 1)[0] == table.name
            ]
            if stale:
                state.client.hdel(state.layout.schemas_key, *stale)
        state.writer.forget(table.name)
        logger.info("deleted %d online rows of feature view %s", deleted, table.name)


def delete_project(state: StoreState, project: str) -> None:
    """Every key of the store's project (under its tenant prefix)."""
    deleted = delete_matching(state, state.layout.project_pattern())
    logger.info("teardown deleted %d online keys of project %s", deleted, project)
    state.writer.forget(None)


def delete_matching(state: StoreState, pattern: str) -> int:
    """SCAN (incremental, COUNT-bounded, on every primary) + UNLINK per page: never blocks
    the server for long, unlike KEYS or one huge DEL."""
    deleted = 0
    page: list[bytes] = []
    with translated(state.endpoint):
        for key in state.client.scan_iter(match=pattern, count=state.cfg.delete_scan_count):
            page.append(key)
            if len(page) >= state.cfg.delete_scan_count:
                deleted += state.client.unlink(*page)
                page.clear()
        if page:
            deleted += state.client.unlink(*page)
    return deleted
