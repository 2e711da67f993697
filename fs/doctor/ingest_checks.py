"""Ingest checks of ``fs doctor`` (the Kafka ingestor of ``<repo>/ingest.yaml``; a repo without one
has nothing to check):

``ingest``        the broker is unreachable (error); the consumer group's lag per topic (committed
                  offset vs the partitions' end, warning above ``LAG_WARN`` records); the circuit
                  breakers of an ingestor serving ``/metrics`` on this host (``http_port``)
``dead_letters``  letters not replayed yet, by reason and source topic; new ones in the last hour
                  are growth (warning). Proposes ``replay_dead_letters`` of exactly the letters read
                  (those the current ingest.yaml decodes), to approve once the cause is fixed

Lag uses the broker's end offsets, which tansu under-reports (by up to a batch): the lag shown is a
lower bound there. Dead letters are read from the topic itself (never counted by end offsets).
"""

from __future__ import annotations

import urllib.request
from collections import Counter
from datetime import timedelta

from fs_platform.doctor.model import Finding, Severity, error_finding

LAG_WARN = 10_000
GROWTH_WINDOW = timedelta(hours=1)
LETTERS_READ = 10_000  # letters read by default (--deep: all)
BREAKER = {1: "half-open", 2: "open"}


def _config(c):
    from fs_platform.plugins.kafka_ingest.config import FILE_NAME, load_ingest_config

    if not (c.platform.repo_path / FILE_NAME).is_file():
        return None
    return load_ingest_config(c.platform.repo_path, c.platform.env)


def _connected(c):
    """(config, kafka kwargs), or None without ingest.yaml; raises if the broker does not answer."""
    cached = c._ingest
    if isinstance(cached, Exception):
        raise cached
    if cached is not None:
        return cached
    from fs_platform.plugins.kafka_ingest.broker import require_broker
    from fs_platform.plugins.kafka_ingest.config import kafka_client_kwargs

    config = _config(c)
    if config is not None:
        try:
            require_broker(config.kafka.bootstrap_servers, timeout_s=2.0)
        except Exception as e:  # remembered: the second ingest check does not wait again
            c._ingest = e
            raise
    c._ingest = (config, kafka_client_kwargs(config)) if config is not None else (None, None)
    return c._ingest


def check_ingest(c) -> list[Finding]:
    try:
        config, kw = _connected(c)
    except Exception as e:
        return [error_finding("ingest", "ingest", e)]
    if config is None:
        return [Finding("ingest", Severity.OK, "ingest", "no ingest.yaml: no Kafka ingestion to check")]
    try:
        findings = _lag(config, kw)
    except Exception as e:
        findings = [error_finding("ingest", "ingest", e)]
    return findings + _breakers(config)


def _lag(config, kw) -> list[Finding]:
    from kafka import KafkaConsumer, TopicPartition

    group = config.kafka.group_id
    # committed() fetches the group's offsets without joining the group (no rebalance of the ingestors)
    consumer = KafkaConsumer(group_id=group, enable_auto_commit=False, **kw)
    findings = []
    try:
        for spec in config.topics:
            parts = consumer.partitions_for_topic(spec.topic) or set()
            tps = [TopicPartition(spec.topic, p) for p in sorted(parts)]
            ends = consumer.end_offsets(tps) if tps else {}
            done = {tp: o for tp in tps if (o := consumer.committed(tp)) is not None and o >= 0}
            lag = {tp.partition: max(0, ends.get(tp, 0) - done.get(tp, 0)) for tp in tps}
            total = sum(lag.values())
            evidence = {
                "group": group,
                "lag": total,
                "partitions": len(tps),
                "uncommitted_partitions": sum(1 for tp in tps if tp not in done),
                "lag_by_partition": {str(p): n for p, n in lag.items() if n},
            }
            if not tps:
                sev, msg = Severity.WARNING, f"topic {spec.topic!r} does not exist on the broker"
            elif total > LAG_WARN:
                sev, msg = (
                    Severity.WARNING,
                    (
                        f"consumer group {group!r} is {total} record(s) behind on {spec.topic!r}: "
                        "the ingestor is down or too slow (run more in the group)"
                    ),
                )
            else:
                sev, msg = (
                    Severity.OK,
                    f"consumer group {group!r} is {total} record(s) behind on {spec.topic!r}",
                )
            findings.append(Finding("ingest", sev, spec.topic, msg, evidence))
    finally:
        consumer.close(autocommit=False)
    return findings


def _breakers(config) -> list[Finding]:
    """Breaker gauges of an ingestor serving /metrics on this host (none configured: nothing said)."""
    if not config.http_port:
        return []
    url = f"http://127.0.0.1:{config.http_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:  # noqa: S310 - loopback, fixed scheme
            text = r.read().decode()
    except OSError:
        return [
            Finding(
                "ingest",
                Severity.INFO,
                "ingest",
                f"no ingestor answers on {url} on this host: breaker "
                "state unknown (the ingestor's own alerts watch fs_ingest_breaker_state)",
            )
        ]
    findings = []
    for line in text.splitlines():
        if line.startswith("fs_ingest_breaker_state{"):
            target = line.split('target="', 1)[1].split('"', 1)[0]
            state = int(float(line.rsplit(" ", 1)[1]))
            if state in BREAKER:
                findings.append(
                    Finding(
                        "ingest",
                        Severity.WARNING,
                        f"breaker:{target}",
                        f"the ingestor's {target} circuit breaker is {BREAKER[state]}: writes to "
                        f"the {target} store fail (see its logs)",
                        {"target": target, "state": state},
                    )
                )
    return findings


def replayed_until(platform) -> dict[int, int]:
    """Per dead-letter partition, the offset up to which executed replays (audit log) reached."""
    from fs_platform.doctor.ops import Ops

    until: dict[int, int] = {}
    for e in Ops(platform).audit.events():
        if e.kind == "replay_dead_letters" and e.event == "executed":
            for p, o in (e.details.get("changed", {}).get("dlq_end_offsets") or {}).items():
                until[int(p)] = max(until.get(int(p), 0), int(o))
    return until


def check_dead_letters(c) -> list[Finding]:
    from fs_platform.doctor.actions import new_action
    from fs_platform.plugins.kafka_ingest.deadletter import decoder_check, iter_dead_letters

    try:
        config, kw = _connected(c)
        if config is None:
            return [
                Finding("dead_letters", Severity.OK, "dead_letters", "no ingest.yaml: no dead-letter topic")
            ]
        start = replayed_until(c.platform)
        check = decoder_check(config, c.platform.repo_path, c.now)
        reasons, topics, end = Counter(), Counter(), {}
        recent = replayable = truncated = 0
        since_ms = int((c.now - GROWTH_WINDOW).timestamp() * 1000)
        limit = None if c.deep else LETTERS_READ
        for d in iter_dead_letters(config.dead_letter_topic, start or None, idle_s=1.0, limit=limit, **kw):
            end[d.dlq_partition] = d.dlq_offset + 1
            reasons[d.reason] += 1
            topics[d.topic] += 1
            recent += d.timestamp_ms >= since_ms
            if d.original_size is not None:
                truncated += 1
            elif check(d.topic, d.value) is None:
                replayable += 1
    except Exception as e:
        return [error_finding("dead_letters", "dead_letters", e)]
    pending = sum(reasons.values())
    topic = config.dead_letter_topic
    if not pending:
        return [Finding("dead_letters", Severity.OK, topic, "no dead letters left to replay")]
    evidence = {
        "pending": pending,
        "last_hour": recent,
        "by_reason": dict(reasons),
        "by_topic": dict(topics),
        "replayable_now": replayable,
        "truncated": truncated,
        "complete": limit is None or pending < limit,
        "start": {str(p): o for p, o in start.items()},
        "end": {str(p): o for p, o in end.items()},
    }
    sev = Severity.WARNING if recent else Severity.INFO
    top = ", ".join(f"{r} {n}" for r, n in reasons.most_common(3))
    msg = f"{pending} dead letter(s) not replayed ({top}); {recent} in the last hour"
    actions = ()
    if replayable:
        params = {
            "start": {str(p): start.get(p, 0) for p in end},
            "end": {str(p): o for p, o in end.items()},
            "letters": replayable,
        }
        actions = (
            new_action(
                "replay_dead_letters",
                params,
                f"{replayable} dead letter(s) decode with the current ingest.yaml: replay them once "
                "the producer-side cause is fixed too",
            ),
        )
        msg += f"; {replayable} decode now and can be replayed"
    else:
        msg += "; none decodes with the current ingest.yaml yet: fix the cause first (`fs ingest dlq`)"
    return [Finding("dead_letters", sev, topic, msg, evidence, actions)]
