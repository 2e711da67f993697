"""The ledger's and the audit log's small-file compaction (one helper, fs/compaction.py)."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from fs_platform.compaction import compact_small_files


def test_files_are_folded_only_past_the_threshold_and_rows_are_kept(tmp_path):
    location = str(tmp_path / "log")
    for i in range(3):
        write_deltalake(location, pa.table({"i": [i]}), mode="append")
    compact_small_files(location, at_files=4, what="test")
    assert len(DeltaTable(location).file_uris()) == 3
    compact_small_files(location, at_files=3, what="test")
    table = DeltaTable(location)
    assert len(table.file_uris()) == 1
    assert sorted(table.to_pyarrow_table()["i"].to_pylist()) == [0, 1, 2]
    compact_small_files(str(tmp_path / "missing"), at_files=1, what="test")  # nothing to do, no error
