"""The rows of processed poll batches waiting for one write target, with the Kafka offsets they cover."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa


@dataclass
class Chunk:
    """Rows of one poll batch of one partition: ``offsets[i]`` is the Kafka offset of row i."""

    tp: object  # TopicPartition
    table: pa.Table
    offsets: np.ndarray


@dataclass
class Buffer:
    """Rows waiting for one target, and the last offset consumed per partition they cover."""

    chunks: list[Chunk] = field(default_factory=list)
    n: int = 0  # rows in chunks
    through: dict = field(default_factory=dict)  # TopicPartition -> last offset consumed
    since: float | None = None  # monotonic time of the oldest pending record

    def due(self, max_rows: int, interval_s: float, now: float) -> bool:
        return bool(self.through) and (self.n >= max_rows or now - self.since >= interval_s)

    def table(self) -> pa.Table | None:
        tables = [c.table for c in self.chunks if c.table.num_rows]
        return None if not tables else tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def origins(self) -> tuple[list[str], np.ndarray]:
        """``topic/partition`` and Kafka offset of each row of ``table()``, in its order."""
        chunks = [c for c in self.chunks if c.table.num_rows]
        partitions: list[str] = []
        for c in chunks:
            partitions += [f"{c.tp.topic}/{c.tp.partition}"] * c.table.num_rows
        offsets = np.concatenate([c.offsets for c in chunks]) if chunks else np.empty(0, np.int64)
        return partitions, offsets

    def take(self) -> Buffer:
        taken = Buffer(self.chunks, self.n, self.through, self.since)
        self.chunks, self.n, self.through, self.since = [], 0, {}, None
        return taken

    def restore(self, taken: Buffer) -> None:
        """Put back a taken buffer whose write failed, in front of what was buffered since."""
        self.chunks = taken.chunks + self.chunks
        self.n += taken.n
        self.through = {**taken.through, **self.through}  # later offsets win
        self.since = taken.since if self.since is None else min(taken.since, self.since)
