"""``fs doctor triage``: one timeline of what happened to a feature service's views (or some views)
in the last hours, the likely causes ranked, and a Markdown incident note.

    from fs_platform.doctor.triage import triage
    t = triage(platform, feature_service="fraud_model_v1", since=timedelta(hours=2))
    t.causes[0]           # the most likely cause: what, why (evidence), runbook link, proposed actions
    t.markdown()          # the incident note (evidence, timeline, causes, proposed plan)

Sources (all read-only): the doctor checks of those views (freshness, ledger, validation, schema,
online store, ingest lag, breakers and dead letters; ``deep``: parity), the ledger's chunk records, the
validation log, the registry's update times, dead letters by arrival time, and the ops audit log.
Breaker transitions come from the ingestor's breaker log (``plugins/kafka_ingest/breaker_log.py``).
Ranking: a cause that explains the others comes first (``WEIGHT``: a broken component, then
a change that preceded the symptoms, then failed work, then the symptoms themselves); ties by time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fs_platform.doctor.model import Action, DoctorReport, Finding, Severity

RUNBOOK = "docs/runbooks/oncall.md"
SECTIONS = {
    "registry": "registry",
    "online_store": "online_store",
    "online_expiry": "online_store",
    "online_memory": "online_store",
    "freshness": "freshness",
    "ledger": "ledger",
    "ingest": "ingest",
    "dead_letters": "dead_letters",
    "validation": "validation",
    "schema": "schema",
    "catalog": "catalog",
    "parity": "parity",
    "registry_change": "registry",
    "ops_action": "ops",
    "breaker_open": "ingest",
}
WEIGHT = {  # higher: more likely the cause (the others are often its symptoms)
    ("schema", Severity.ERROR): 100,
    ("online_store", Severity.ERROR): 95,
    ("ingest", Severity.ERROR): 95,
    ("registry", Severity.ERROR): 95,
    ("breaker_open", Severity.WARNING): 85,
    ("ingest", Severity.WARNING): 80,
    ("registry_change", Severity.WARNING): 78,
    ("ops_action", Severity.WARNING): 76,
    ("ledger", Severity.WARNING): 70,
    ("dead_letters", Severity.WARNING): 65,
    ("registry", Severity.WARNING): 55,
    ("freshness", Severity.WARNING): 50,
    ("validation", Severity.WARNING): 45,
    ("online_expiry", Severity.WARNING): 30,
    ("parity", Severity.WARNING): 25,
    ("online_store", Severity.WARNING): 20,
}
TRIAGE_CHECKS = (
    "registry",
    "online_store",
    "freshness",
    "ledger",
    "ingest",
    "dead_letters",
    "validation",
    "schema",
)


@dataclass(frozen=True)
class Event:
    at: datetime
    source: str  # ledger | validation | registry | dead_letters | ops | breaker | freshness
    subject: str
    what: str


@dataclass(frozen=True)
class Cause:
    score: int
    check: str
    subject: str
    what: str
    evidence: dict
    runbook: str
    actions: tuple[Action, ...] = ()


@dataclass
class Triage:
    scope: str
    views: list[str]
    start: datetime
    end: datetime
    causes: list[Cause]
    timeline: list[Event]
    report: DoctorReport
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "scope": self.scope,
            "views": self.views,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "causes": [{**c.__dict__, "actions": [a.to_dict() for a in c.actions]} for c in self.causes],
            "timeline": [{**e.__dict__, "at": e.at.isoformat()} for e in self.timeline],
            "notes": self.notes,
            "findings": [f.to_dict() for f in self.report.findings],
        }

    def markdown(self) -> str:
        from fs_platform.doctor.notes import incident_note

        return incident_note(self)


def scope_views(store, feature_service: str | None, views: list[str] | None) -> list[str]:
    """The views a feature service reads (with an on-demand view's sources), or ``views``."""
    if not feature_service:
        return list(views or [])
    from fs_platform.errors import InvalidArgument

    try:
        fs = store.get_feature_service(feature_service)
    except Exception:
        names = sorted(s.name for s in store.list_feature_services())
        raise InvalidArgument(
            f"--feature-service: no feature service {feature_service!r} (known: {', '.join(names)})"
        ) from None
    out = []
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    for p in fs.feature_view_projections:
        if p.name in odfvs:
            out += [s.name for s in odfvs[p.name].source_feature_view_projections.values()]
        else:
            out.append(p.name)
    return sorted(set(out) | set(views or []))


def triage(
    platform,
    *,
    feature_service: str | None = None,
    views: list[str] | None = None,
    since: timedelta = timedelta(hours=2),
    deep: bool = False,
    now: datetime | None = None,
) -> Triage:
    from fs_platform.doctor.checks import doctor
    from fs_platform.timeutil import utcnow

    now = now or utcnow()
    start = now - since
    names = scope_views(platform.store, feature_service, views)
    plain = [n for n in names if n in {v.name for v in platform.store.list_feature_views()}]
    checks = [*TRIAGE_CHECKS, *(("parity",) if deep else ())]
    report = doctor(platform, plain or None, checks=checks, deep=deep, now=now)
    timeline, notes = [], []
    sources = [
        _ledger_events,
        _validation_events,
        _registry_events,
        _ops_events,
        _breaker_events,
        _dead_letter_events,
    ]
    if any(f.check == "ingest" and f.severity == Severity.ERROR for f in report.findings):
        sources.remove(_dead_letter_events)  # the broker did not answer the checks: not waited for twice
        notes.append("dead letters not read: the Kafka broker did not answer (see the ingest finding)")
    for source in sources:
        try:
            timeline += source(platform, set(names), start, now)
        except Exception as e:  # one unreadable source never hides the others
            notes.append(f"{source.__name__.strip('_').replace('_', ' ')} not read: {type(e).__name__}")
    timeline += _freshness_events(report, start)
    timeline.sort(key=lambda e: e.at)
    causes = _rank(report.findings, timeline)
    return Triage(feature_service or ", ".join(names), names, start, now, causes, timeline, report, notes)


# -- timeline sources -------------------------------------------------------------------------------
def _ledger_events(platform, views, start, end) -> list[Event]:
    from fs_platform.backfill.runner import Backfiller

    out = []
    for e in Backfiller(platform).ledger.entries():
        if e.view in views and start <= e.recorded_at <= end and e.status.value != "planned":
            out.append(
                Event(
                    e.recorded_at,
                    "ledger",
                    e.view,
                    f"{e.target.value} {e.kind.value} chunk {e.interval} "
                    f"{e.status.value} (run {e.run_id})" + (f": {e.message}" if e.message else ""),
                )
            )
    return out


def _validation_events(platform, views, start, end) -> list[Event]:
    from fs_platform.governance.validate import list_results

    return [
        Event(
            r.checked_at,
            "validation",
            r.view,
            f"validation {r.outcome} ({r.origin}, {len(r.failures)} failed check(s))",
        )
        for r in list_results(platform.store, None, limit=500)
        if r.view in views and start <= r.checked_at <= end
    ]


def _registry_events(platform, views, start, end) -> list[Event]:
    out = []
    for v in platform.store.list_all_feature_views():
        at = getattr(v, "last_updated_timestamp", None)
        if v.name in views and at is not None:
            at = at if at.tzinfo else at.replace(tzinfo=start.tzinfo)
            if start <= at <= end:
                out.append(
                    Event(at, "registry", v.name, "the view's definition changed in the registry (fs apply)")
                )
    return out


def _ops_events(platform, views, start, end) -> list[Event]:
    from fs_platform.doctor.ops import log_events

    return [
        Event(e.at, "ops", e.view or "-", f"fs ops {e.event} {e.kind} ({e.action_id}) by {e.actor}")
        for e in log_events(platform, start)
        if e.event in ("executed", "rolled_back", "failed") and (e.view is None or e.view in views)
    ]


def _breaker_events(platform, views, start, end) -> list[Event]:
    """The ingestor's breaker transitions (its breakers guard every view's writes: not filtered by view)."""
    from fs_platform.plugins.kafka_ingest.breaker_log import location, read_transitions

    return [
        Event(
            t.at,
            "breaker",
            f"{t.breaker} breaker",
            f"ingest {t.breaker} breaker {t.from_state} -> {t.to_state}"
            + (f" after {t.failures} failed write(s)" if t.to_state == "open" else "")
            + f" ({t.ingestor})",
        )
        for t in read_transitions(location(platform), start, end)
    ]


def _dead_letter_events(platform, views, start, end) -> list[Event]:
    """Dead letters per 10 minutes (a spike is a bucket); by reason, never payloads."""
    from fs_platform.plugins.kafka_ingest.config import FILE_NAME, kafka_client_kwargs, load_ingest_config
    from fs_platform.plugins.kafka_ingest.deadletter import iter_dead_letters

    if not (platform.repo_path / FILE_NAME).is_file():
        return []
    from fs_platform.plugins.kafka_ingest.broker import require_broker

    config = load_ingest_config(platform.repo_path, platform.env)
    require_broker(config.kafka.bootstrap_servers, timeout_s=2.0)
    buckets: dict[int, Counter] = {}
    since_ms = int(start.timestamp() * 1000)
    for d in iter_dead_letters(
        config.dead_letter_topic, idle_s=1.0, limit=10_000, **kafka_client_kwargs(config)
    ):
        if d.timestamp_ms >= since_ms:
            buckets.setdefault(d.timestamp_ms // 600_000, Counter())[d.reason] += 1
    from datetime import UTC

    return [
        Event(
            datetime.fromtimestamp(b * 600, UTC),
            "dead_letters",
            config.dead_letter_topic,
            f"{sum(c.values())} dead letter(s) in 10 min: "
            + ", ".join(f"{r} {n}" for r, n in c.most_common()),
        )
        for b, c in sorted(buckets.items())
    ]


def _freshness_events(report: DoctorReport, start: datetime) -> list[Event]:
    """When a stale view's stale side stopped advancing (its newest event time), if in the window."""
    from fs_platform.timeutil import parse_time

    out = []
    for f in report.findings:
        if f.check != "freshness" or f.severity != Severity.WARNING:
            continue
        side = "online" if f.message.startswith("stale online") else "offline"
        at = f.evidence.get(f"{side}_newest")
        if at and parse_time(at) >= start:
            out.append(
                Event(parse_time(at), "freshness", f.subject, f"newest {side} value (nothing newer since)")
            )
    return out


# -- ranking ----------------------------------------------------------------------------------------
def _rank(findings: list[Finding], timeline: list[Event]) -> list[Cause]:
    causes = []
    for f in findings:
        score = WEIGHT.get((f.check, f.severity))
        if score is None and f.severity >= Severity.WARNING:
            score = 10
        if score is not None:
            causes.append(Cause(score, f.check, f.subject, f.message, f.evidence, _link(f.check), f.actions))
    changed = [
        e
        for e in timeline
        if e.source in ("registry", "ops") or (e.source == "breaker" and "-> open" in e.what)
    ]
    first_symptom = next(
        (e.at for e in timeline if e.source in ("ledger", "validation", "dead_letters", "freshness")), None
    )
    for e in changed:  # a change before the first symptom may have caused it
        before = first_symptom is None or e.at <= first_symptom
        check = {"registry": "registry_change", "ops": "ops_action", "breaker": "breaker_open"}[e.source]
        score = WEIGHT[(check, Severity.WARNING)] - (0 if before else 30)
        causes.append(
            Cause(
                score,
                check,
                e.subject,
                f"{e.what} at {e.at:%H:%M} UTC"
                + (", before the first symptom" if before and first_symptom else ""),
                {"at": e.at.isoformat()},
                _link(check),
            )
        )
    return sorted(causes, key=lambda c: -c.score)


def _link(check: str) -> str:
    return f"{RUNBOOK}#{SECTIONS.get(check, 'what-each-finding-means')}"
