"""What every doctor check runs against (``CheckContext``: the platform, the views asked for, the
time of the run, scans shared by the checks of one run) and how evidence quotes a time."""

from __future__ import annotations

from datetime import datetime


class CheckContext:
    def __init__(self, platform, views: list[str] | None, deep: bool, now: datetime):
        self.platform, self.views, self.deep, self.now = platform, views, deep, now
        self._online_scan = None  # online_scan.scan: one SCAN per run, shared by the online checks
        self._ingest = None  # ingest_checks: (config, kafka kwargs), or why the broker did not answer

    @property
    def store(self):
        return self.platform.store

    def online_views(self) -> list:
        from fs_platform.views import feature_views

        return (
            feature_views(self.store, self.views, online=True)
            if self.views
            else [v for v in self.store.list_feature_views() if v.online]
        )

    def wanted(self, view: str) -> bool:
        return not self.views or view in self.views


def fmt_time(ts: datetime | None) -> str | None:
    return ts.isoformat(timespec="seconds") if ts else None
