"""``FsFeatureStore``: Feast's ``FeatureStore`` (what ``Platform.store`` is) with the platform's errors.

Feast resolves feature references before any store is called and reports a bad one as a bare
``KeyError`` (``'Feature nope not found in projection merchant_risk_daily'``) or its own
``FeatureViewNotFoundException``. Here the same calls raise the platform's errors, with the message
the online store and ``fs serve`` give:

- an unknown feature of a known view: ``UnknownFeatureError`` (also a ``KeyError``, so existing
  ``except KeyError`` keeps working) ``feature view 'v' has no feature(s) nope — known: ...``;
- an unknown view: ``ViewNotFoundError`` listing the known views;
- writes (``write_to_online_store``, ``write_to_offline_store``, ``push``): an unknown view or push
  source, rows lacking a feature column (``OnlineWriteError``; Feast: a bare ``KeyError``).

The registry getters (``get_feature_view``, ...) keep Feast's exceptions: Feast's own code falls back
on them (``feature_view_utils``). The platform's lookups are ``Platform.feature_view`` /
``fs_platform.views``.

References are only examined when Feast's own call failed, so a good request costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feast import FeatureStore

from fs_platform.errors import FsError, OnlineWriteError, RepoError, SchemaMismatchError, UnknownFeatureError
from fs_platform.views import view_not_found


class FsFeatureStore(FeatureStore):
    """A Feast ``FeatureStore`` whose bad feature references raise ``FsError`` subclasses."""

    served_log = None
    """Opt-in served-feature logging of ``get_online_features``
    (``fs_platform.plugins.serving.served_log.enable(store, ...)``); None: off."""

    def get_historical_features(self, entity_df=None, features=None, *args, **kwargs):
        features = [] if features is None else features
        try:
            return super().get_historical_features(entity_df, features, *args, **kwargs)
        except Exception as e:
            _reraise(e, self._reference_error(features, e))

    def get_online_features(self, features, entity_rows, *args, **kwargs):
        try:
            response = super().get_online_features(features, entity_rows, *args, **kwargs)
        except Exception as e:
            _reraise(e, self._reference_error(features, e))
        if self.served_log is not None:
            self.served_log.log_response(features, entity_rows, response)
        return response

    async def get_online_features_async(self, features, entity_rows, *args, **kwargs):
        try:
            return await super().get_online_features_async(features, entity_rows, *args, **kwargs)
        except Exception as e:
            _reraise(e, self._reference_error(features, e))

    def write_to_online_store(self, feature_view_name, df=None, inputs=None, *args, **kwargs):
        try:
            return super().write_to_online_store(feature_view_name, df, inputs, *args, **kwargs)
        except Exception as e:
            _reraise(e, self._write_error(feature_view_name, df if df is not None else inputs, e))

    def write_to_offline_store(self, feature_view_name, df, *args, **kwargs):
        try:
            return super().write_to_offline_store(feature_view_name, df, *args, **kwargs)
        except Exception as e:
            _reraise(e, self._write_error(feature_view_name, df, e, offline=True))

    def push(self, push_source_name, df, *args, **kwargs):
        from feast.data_source import PushSource
        from feast.errors import PushSourceNotFoundException

        try:
            return super().push(push_source_name, df, *args, **kwargs)
        except PushSourceNotFoundException as e:
            known = sorted(s.name for s in self.list_data_sources() if isinstance(s, PushSource))
            raise RepoError(
                f"unknown push source {push_source_name!r}",
                hint=f"known: {', '.join(known)}" if known else "no push sources are registered",
            ) from e

    def close(self) -> None:
        """Close the clients this store opened: the online store's Redis connections and the
        registry's refresh thread and SQL connections. Nothing not yet opened is opened to close it;
        the store reopens lazily if used again."""
        from fs_platform.feast_compat import take_opened

        if self.served_log is not None:
            self.served_log.close()  # writes what is queued
        provider, registry = take_opened(self)
        if provider is not None:
            _close_online_store(provider.online_store)
        if registry is not None:
            timer = getattr(registry, "registry_refresh_thread", None)
            if timer is not None:
                timer.cancel()
            engines = (getattr(registry, name, None) for name in ("write_engine", "read_engine"))
            for engine in dict.fromkeys(e for e in engines if e is not None):  # often one engine twice
                engine.dispose()

    def _write_error(self, name: str, data: Any, err: Exception, offline: bool = False) -> Exception:
        """``ViewNotFoundError`` for an unknown view, ``OnlineWriteError`` (offline:
        ``SchemaMismatchError``) naming the columns the rows lack (Feast: a bare ``KeyError`` for
        both), else ``err``."""
        from feast.errors import FeastObjectNotFoundException

        if isinstance(err, FsError) or not isinstance(err, KeyError | FeastObjectNotFoundException):
            return err
        views = {v.name: v for v in self.list_all_feature_views()}
        if name not in views:
            return view_not_found([name], views)
        view = views[name]
        needed = [*(c.name for c in getattr(view, "entity_columns", [])), *(f.name for f in view.features)]
        columns = set(data.columns) if hasattr(data, "columns") else set(data or {})
        missing = [c for c in dict.fromkeys(needed) if c not in columns]
        if not missing:
            return err
        return (SchemaMismatchError if offline else OnlineWriteError)(
            f"rows for feature view {name!r} lack column(s) {', '.join(missing)}",
            hint="write every feature of the view with its join keys and timestamps",
        )

    def _reference_error(self, features: Any, err: Exception) -> Exception:
        """The platform's error for a bad reference in ``features`` if Feast's ``err`` is about one,
        else ``err`` itself."""
        from feast.errors import FeastObjectNotFoundException

        if isinstance(err, FsError) or not isinstance(err, KeyError | FeastObjectNotFoundException):
            return err
        found = reference_error(self, features)
        return found if found is not None else err


def _close_online_store(online) -> None:
    """Disconnect the online store's clients (fs's Redis store has ``close()``; others: nothing)."""
    close = getattr(online, "close", None)
    if callable(close):
        close()


def _reraise(original: Exception, translated: Exception):
    """Raise ``translated`` (caused by ``original``), or ``original`` itself, traceback intact."""
    if translated is original:
        raise original
    raise translated from original


def reference_error(store, features: Any) -> FsError | None:
    """``ViewNotFoundError`` / ``UnknownFeatureError`` for the first bad ``view:feature`` reference
    in ``features`` (a list; a feature service is resolved by Feast), else None."""
    if not isinstance(features, Sequence) or isinstance(features, str):
        return None
    views = {v.name: [f.name for f in v.features] for v in store.list_feature_views()}
    views.update({v.name: [f.name for f in v.features] for v in store.list_stream_feature_views()})
    on_demand = {v.name: [f.name for f in v.features] for v in store.list_on_demand_feature_views()}
    known = {**views, **on_demand}
    for ref in features:
        if not isinstance(ref, str) or ":" not in ref:
            continue  # Feast's own message for a malformed reference stands
        view, feature = ref.split(":", 1)
        view = view.split("@", 1)[0]  # a versioned reference (view@v2:feature)
        if view not in known:
            return view_not_found([view], known)
        if feature not in known[view]:
            return UnknownFeatureError(
                f"feature view {view!r} has no feature(s) {feature}", hint=f"known: {', '.join(known[view])}"
            )
    return None
