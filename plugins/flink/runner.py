"""Start the Flink job from the project's environment (``run_flink``): resolve the views and topics,
check the Flink environment and the restore point, then run ``job.py`` with the Flink environment's
interpreter in its own process group (the JVM and Python workers are its children)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fs_platform.errors import IngestError
from fs_platform.plugins.flink.env import flink_python, require_env
from fs_platform.plugins.flink.plan import (
    JobPlan,
    check_restore,
    latest_restore_point,
    plan_job,
    read_manifest,
    write_manifest,
)
from fs_platform.plugins.flink.settings import FlinkSettings

log = logging.getLogger(__name__)


def _interrupt(*_):
    raise KeyboardInterrupt


@dataclass
class FlinkRun:
    """A started Flink job process. ``stop()`` ends it with a savepoint; ``kill()`` is a SIGKILL of the
    whole process group (the next start resumes from the last checkpoint)."""

    process: subprocess.Popen
    plan: JobPlan
    checkpoint_dir: Path
    restored_from: str | None
    output: object  # the job's stdout (a file: its output can never block it)
    events: list[dict] = field(default_factory=list)  # the job's JSON status lines read so far

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        self.output.seek(0)
        self.events = [json.loads(line) for line in self.output.read().splitlines() if line.startswith("{")]

    def wait(self, timeout: float | None = None) -> int:
        rc = self.process.wait(timeout)
        self._read()
        return rc

    def stop(self, timeout: float = 120.0) -> str | None:
        """SIGTERM: the job stops with a savepoint; its path, or None if the job had already ended."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.wait(timeout)
        return next((e["savepoint"] for e in reversed(self.events) if "savepoint" in e), None)

    def run_until_stopped(self, duration_s: float | None = None) -> str | None:
        """Wait for SIGTERM/Ctrl-C (or ``duration_s``), then stop with a savepoint; its path. A job that
        ends by itself raises ``IngestError`` (its log is on stderr)."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
        try:
            rc = self.wait(duration_s)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            return self.stop()
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
        raise IngestError(
            f"the Flink job process ended by itself (exit {rc}); nothing was lost: the next "
            "start resumes from its last checkpoint",
            hint="its log is above; FS_DEBUG=1 for more",
        )

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def run_flink(
    platform,
    ingest_config,
    settings: FlinkSettings,
    views: list[str] | None = None,
    group: str | None = None,
    fresh: bool = False,
    restore: str | None = None,
    log_path: Path | None = None,
) -> FlinkRun:
    """Start the Flink job for ``views`` (default: every online aggregation view fed by ingest.yaml).

    Restores the newest checkpoint or savepoint under ``settings.checkpoint_dir`` (or ``restore``) unless
    ``fresh``, after checking it was taken for the same specs and topics (``RestoreRefused`` otherwise).
    The Kafka positions of a fresh job are ``group``'s committed offsets (default: ingest.yaml's group
    + ``-flink``), else the earliest."""
    python = flink_python(settings.python)
    require_env(python)
    plan = plan_job(platform.store, ingest_config, views)
    checkpoint_dir = Path(settings.checkpoint_dir)
    if not checkpoint_dir.is_absolute():
        checkpoint_dir = Path(platform.repo_path) / checkpoint_dir
    point = None if fresh else (Path(restore) if restore else latest_restore_point(checkpoint_dir))
    if point is not None:
        saved = read_manifest(checkpoint_dir)
        if saved is not None:
            check_restore(saved, plan, str(point))
    write_manifest(checkpoint_dir, plan)
    cmd = [
        str(python),
        "-m",
        "fs_platform.plugins.flink.job",
        "--repo",
        str(platform.repo_path),
        "--env",
        platform.env,
        "--views",
        ",".join(plan.views),
        "--group",
        group or f"{ingest_config.kafka.group_id}-flink",
        "--settings",
        settings.model_dump_json(),
        "--checkpoint-dir",
        str(checkpoint_dir),
    ]
    if point is not None:
        cmd += ["--restore", point.resolve().as_uri()]
    stderr = open(log_path, "ab") if log_path else None  # noqa: SIM115 (the child owns it)
    output = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed with the run)
    process = subprocess.Popen(
        cmd, stdout=output, stderr=stderr, text=True, start_new_session=True, cwd=str(platform.repo_path)
    )
    log.info(
        "flink job process %d started (views %s)%s",
        process.pid,
        ", ".join(plan.views),
        f", restoring {point}" if point else "",
    )
    return FlinkRun(process, plan, checkpoint_dir, None if point is None else str(point), output)
