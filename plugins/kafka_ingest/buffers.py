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

    def take(self, max_rows: int | None = None) -> Buffer:
        """The buffer whole, or its oldest ``max_rows`` rows (a chunk may be split). A partial take
        covers, per partition, the offsets up to its last row taken (all of ``through`` for partitions
        none of whose rows stay behind); the rest keeps ``through``, so marking the two in turn moves
        each partition's mark forward."""
        if max_rows is None or self.n <= max_rows:
            taken = Buffer(self.chunks, self.n, self.through, self.since)
            self.chunks, self.n, self.through, self.since = [], 0, {}, None
            return taken
        chunks, n = [], 0
        while n < max_rows and self.chunks:
            c = self.chunks[0]
            k = min(c.table.num_rows, max_rows - n)
            if k == c.table.num_rows:
                self.chunks.pop(0)
                chunks.append(c)
            else:
                chunks.append(Chunk(c.tp, c.table.slice(0, k), c.offsets[:k]))
                self.chunks[0] = Chunk(c.tp, c.table.slice(k), c.offsets[k:])
            n += k
        left = {c.tp for c in self.chunks if c.table.num_rows}
        through = {tp: o for tp, o in self.through.items() if tp not in left}
        for c in chunks:
            if c.tp in left and c.table.num_rows:
                through[c.tp] = int(c.offsets[-1])
        self.n -= n
        return Buffer(chunks, n, through, self.since)

    def restore(self, taken: Buffer) -> None:
        """Put back a taken buffer whose write failed, in front of what was buffered since."""
        self.chunks = taken.chunks + self.chunks
        self.n += taken.n
        self.through = {**taken.through, **self.through}  # later offsets win
        self.since = taken.since if self.since is None else min(taken.since, self.since)
