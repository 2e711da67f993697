"""``Offsets``: per assigned partition, what is committed to Kafka and what each target has written.

A partition's offsets are committed only up to what every target of its topic has written (and
after the dead letters of the records below them are acknowledged), so a crash replays at most the
uncommitted records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from fs_platform.errors import TransientError
from fs_platform.plugins.kafka_ingest.buffers import Buffer
from fs_platform.plugins.kafka_ingest.deadletter import DeadLetters
from fs_platform.plugins.kafka_ingest.pipeline import TopicPipeline
from fs_platform.plugins.kafka_ingest.recorder import Recorder
from fs_platform.plugins.kafka_ingest.transform import Hook

log = logging.getLogger(__name__)
_COMMIT_TIMEOUT_MS = 5_000


@dataclass
class Partition:
    pipe: TopicPipeline
    hook: Hook | None
    committed: int = -1  # next offset committed to Kafka
    online_done: int = -1  # last offset whose rows are in the online store
    offline_done: int = -1  # last offset whose rows are in Delta
    position: int = 0  # next offset to process (for the lag gauge)

    def done(self) -> int:
        spec = self.pipe.spec
        marks = ([self.online_done] if spec.online else []) + ([self.offline_done] if spec.offline else [])
        return min(marks)


class Offsets:
    """The assigned partitions' state; loop thread only."""

    def __init__(self, pipes: dict[str, TopicPipeline], recorder: Recorder):
        self._pipes = pipes
        self._recorder = recorder
        self.parts: dict[TopicPartition, Partition] = {}

    def assign(self, assigned: set, batch: dict, consumer: KafkaConsumer) -> dict:
        """Partition state for newly assigned partitions; those whose stateful transform must first
        replay history, as ``{tp: (partition, committed offset)}``.

        Every partition restarts at its committed offset: kafka-python keeps the fetch position of a
        partition that stays assigned across an eager rebalance, but its buffered rows were dropped,
        so continuing from there would leave a gap. Records this poll returned for it are refetched.
        """
        warm: dict[TopicPartition, tuple[Partition, int]] = {}
        for tp in sorted(assigned):
            pipe = self._pipes[tp.topic]
            part = Partition(pipe, pipe.new_hook())
            committed = consumer.committed(tp)
            # Offset 0 below the log start falls back to auto_offset_reset=earliest.
            consumer.seek(tp, committed or 0)
            batch.pop(tp, None)
            if committed is None:  # a new group starts at the earliest offset (nothing skipped)
                part.committed = 0
            else:
                part.committed = part.position = committed
                part.online_done = part.offline_done = committed - 1
                if pipe.transform is not None and pipe.transform.stateful and committed > 0:
                    warm[tp] = (part, committed)
            self.parts[tp] = part
        return warm

    def mark(self, taken: Buffer, attr: str) -> None:
        """The partitions' rows up to ``taken.through`` are written (``attr``: online_done|offline_done)."""
        log.debug(
            "%s through %s (%d rows)",
            attr,
            {f"{t.topic}[{t.partition}]": o for t, o in taken.through.items()},
            taken.n,
        )
        for tp, offset in taken.through.items():
            part = self.parts.get(tp)
            if part is not None:
                setattr(part, attr, offset)

    def commit(self, consumer: KafkaConsumer, dlq: DeadLetters) -> None:
        offsets = {}
        for tp, part in self.parts.items():
            nxt = part.done() + 1
            if nxt > part.committed:
                offsets[tp] = OffsetAndMetadata(nxt, "", -1)
        if not offsets:
            return
        try:
            # Dead letters must be durable before the offsets that skip their records.
            self._recorder.parked(dlq.flush(timeout_s=10))
            # Bounded: kafka-python retries a commit during a rebalance until it succeeds, and the
            # rebalance itself needs this thread back in poll().
            consumer.commit(offsets, timeout_ms=_COMMIT_TIMEOUT_MS)
        except CommitFailedError:
            log.warning(
                "offset commit rejected (group rebalanced); the new owner replays from the last commit"
            )
            return
        except (KafkaError, TransientError) as e:
            log.warning("offset commit failed, will retry: %s", type(e).__name__)
            return
        for tp, om in offsets.items():
            self.parts[tp].committed = om.offset
        self._recorder.offsets_committed()
        log.debug("committed %s", {f"{tp.topic}[{tp.partition}]": om.offset for tp, om in offsets.items()})

    def report_lag(self, consumer: KafkaConsumer) -> None:
        # The high watermark of the last fetch response (end_offsets() may under-report on some brokers).
        for tp, part in self.parts.items():
            high = consumer.highwater(tp)
            if high is not None:
                self._recorder.lag(tp.topic, tp.partition, max(0, high - part.position))

    def release(self) -> None:
        """Forget every partition, and its lag gauge (the run is over)."""
        for tp in self.parts:
            self._recorder.forget_lag(tp.topic, tp.partition)
        self.parts.clear()
