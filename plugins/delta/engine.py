"""Spark sessions for the Delta offline store (and for anyone else who needs Spark).

One code path, three engines:

* **embedded** (default): a Sail Spark Connect server started in this process on first use and
  reused for the life of the process;
* **remote**: any Spark Connect endpoint named by ``spark_remote: sc://host:port`` in the config;
* **user session**: a ``SparkSession`` handed in with :func:`use_spark_session` (Databricks notebook,
  classic ``delta-spark`` cluster). It wins over the config until cleared with ``use_spark_session(None)``.

Public, stable helpers: :func:`get_spark`, :func:`get_engine`, :func:`use_spark_session`, and for whoever
owns a lifetime (``Platform.close``): :func:`open_sessions`, :func:`stop_session`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pyspark.sql import SparkSession

from fs_platform.errors import OfflineStoreError

logger = logging.getLogger(__name__)


def _cores() -> int:
    """CPUs this process may run on (the affinity mask, which containers narrow; else the count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


SAIL_DEFAULTS = {
    # Rows per Arrow batch (Sail's default: 8192). Larger batches cut per-batch overhead in the sorts,
    # windows and hash joins of point-in-time retrieval: ~15% less CPU at 1M entity x 10M feature
    # rows, same peak memory (docs/offline_store.md, "Performance").
    "SAIL_EXECUTION__BATCH_SIZE": "65536",
    # Sail's allocator (mimalloc) asks for transparent huge pages on its 1 GiB arenas. On VMs that
    # back guest memory lazily (the Firecracker VMs we develop on) the kernel then zeroes fresh 2 MB
    # pages at a fraction of memory speed: ~3 s of system CPU and a quarter of the wall time of a
    # 1M x 10M retrieval. Set MIMALLOC_ALLOW_THP=2 to get Sail's default back where THP is cheap.
    "MIMALLOC_ALLOW_THP": "0",
    # Partitions per query stage (Sail's default: one per core). Four per core make each sort and
    # window partition a quarter as large: ~7% less wall time at 1M x 10M on 2 cores (2.96 -> 2.75 s;
    # 8, 16 and 32 partitions measured alike), the same at 100k x 1M.
    "SAIL_EXECUTION__DEFAULT_PARALLELISM": str(4 * _cores()),
}
"""Settings for the embedded Sail server (read when it starts), unless the environment sets them."""

_lock = threading.Lock()
_sail_server: Any = None  # pysail.spark.SparkConnectServer, started lazily
_sessions: dict[tuple, SparkSession] = {}
_user_session: SparkSession | None = None


@dataclass(frozen=True)
class Engine:
    """A Spark session plus what the store may assume about it.

    ``local_files`` is true when the Spark server shares this machine's file system (embedded Sail),
    so bulk data can move as parquet files in a temp folder instead of through the Connect channel
    (which is ~200k rows/s).
    """

    spark: SparkSession
    local_files: bool
    partitions: int | None = None
    """Partitions to split key-hashed work into (the embedded Sail's parallelism); None = the session's
    ``spark.sql.shuffle.partitions``. Sail reports Spark's default 200 there but runs one task per
    partition of an explicit ``repartition``, so it needs the real number."""


def use_spark_session(session: SparkSession | None) -> None:
    """Make every Delta store in this process use ``session`` (``None`` goes back to the config).

    The session is switched to UTC, as the sessions the store opens itself: naive timestamps (Spark's
    ``timestamp_ntz``, e.g. from tables written from naive pandas data) mean UTC everywhere in fs, and
    Spark reads them in the session's time zone."""
    global _user_session
    if session is not None:
        zone = session.conf.get("spark.sql.session.timeZone", None)
        if zone != "UTC":
            session.conf.set("spark.sql.session.timeZone", "UTC")
            logger.warning(
                "spark.sql.session.timeZone of the session handed to fs set to UTC (was %s): "
                "fs reads naive timestamps as UTC",
                zone,
            )
    with _lock:
        _user_session = session


def get_spark(repo_config: Any = None) -> SparkSession:
    """The Spark session for ``repo_config`` (a Feast ``RepoConfig``; ``None`` means embedded Sail)."""
    return get_engine(repo_config).spark


def get_engine(repo_config: Any = None) -> Engine:
    """The :class:`Engine` for ``repo_config``: user session, else ``spark_remote``, else embedded Sail."""
    store_cfg = getattr(repo_config, "offline_store", None)
    remote = getattr(store_cfg, "spark_remote", None) or None  # "" (an unset env var) = embedded
    conf = dict(getattr(store_cfg, "spark_conf", None) or {})
    with _lock:
        if _user_session is not None:
            return Engine(_user_session, local_files=_is_classic_local(_user_session))
        key = (remote, tuple(sorted(conf.items())))
        session = _sessions.get(key)
        if session is None:
            url = remote or _embedded_url()
            session = _connect(url, conf)
            _sessions[key] = session
        return Engine(
            session,
            local_files=remote is None,
            partitions=_embedded_parallelism() if remote is None else None,
        )


def open_sessions() -> list[SparkSession]:
    """The sessions this module opened and still keeps (a session handed in by the user is not one)."""
    with _lock:
        return list(_sessions.values())


def stop_session(session: SparkSession) -> None:
    """Stop one of :func:`open_sessions` and forget it (the next :func:`get_engine` opens a new one).
    The embedded Sail server stays up for the life of the process: a new session on it is cheap."""
    with _lock:
        for key, value in list(_sessions.items()):
            if value is session:
                del _sessions[key]
    try:
        session.stop()
    except Exception as e:  # an unreachable remote: the session is gone for us either way
        logger.debug("stopping a Spark session failed: %s", type(e).__name__)


def partitions_for(session: Any) -> int | None:
    """``Engine.partitions`` of the engine ``session`` belongs to (None if it is not one of ours, or
    not the embedded Sail): for code that only has a DataFrame."""
    with _lock:
        embedded = any(s is session and remote is None for (remote, _), s in _sessions.items())
    return _embedded_parallelism() if embedded and session is not _user_session else None


def _embedded_parallelism() -> int | None:
    return int(os.environ.get("SAIL_EXECUTION__DEFAULT_PARALLELISM") or 0) or None


def _embedded_url() -> str:
    global _sail_server
    if _sail_server is None:
        # Sail logs sessions at INFO and task aborts at exit at WARN to stderr; keep it quiet unless asked.
        os.environ.setdefault("RUST_LOG", "error")
        # Sail reads its settings from the environment when the server starts; an explicit value wins.
        for name, value in SAIL_DEFAULTS.items():
            os.environ.setdefault(name, value)
        from pysail.spark import SparkConnectServer

        server = SparkConnectServer(ip="127.0.0.1", port=0)
        server.start(background=True)
        _sail_server = server
        logger.info("started embedded Sail Spark Connect server on %s:%s", *server.listening_address)
    host, port = _sail_server.listening_address
    return f"sc://{host}:{port}"


def safe_url(url: str) -> str:
    """``scheme://host:port`` of a Spark Connect URL: no user info, path or ``;token=...`` parameters."""
    parts = urlsplit(url)
    hostport = parts.netloc.rsplit("@", 1)[-1].split(";", 1)[0]
    return f"{parts.scheme}://{hostport}" if parts.scheme else hostport


def _connect(url: str, conf: dict[str, str]) -> SparkSession:
    try:
        # create() (not getOrCreate) so two configs with different spark_conf get separate sessions.
        session = SparkSession.builder.remote(url).create()
        # Timestamps are instants; a UTC session keeps naive values and string literals unambiguous.
        session.conf.set("spark.sql.session.timeZone", "UTC")
        for name, value in conf.items():
            session.conf.set(name, value)
    except Exception as exc:  # pyspark raises several unrelated types for connection problems
        detail = (str(exc).splitlines() or [""])[0].replace(url, safe_url(url))
        detail = re.sub(r"(token|password|secret)=[^;&\s]*", r"\1=***", detail, flags=re.IGNORECASE)
        raise OfflineStoreError(
            f"cannot open a Spark Connect session at {safe_url(url)}: {type(exc).__name__}: {detail}",
            hint="check offline_store.spark_remote in feature_store.yaml",
        ) from exc
    return session


def _is_classic_local(session: SparkSession) -> bool:
    """True for a classic (JVM) session with a ``local[...]`` master: it sees our file system."""
    try:
        return session.sparkContext.master.startswith("local")
    except Exception:  # Spark Connect sessions have no sparkContext
        return False
