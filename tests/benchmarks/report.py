"""The one writer of docs/benchmarks.md: each benchmark script owns a section between markers
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` and rewrites only that section."""

from __future__ import annotations

import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def write_section(name: str, text: str, path: Path = DOC) -> None:
    """Replace section ``name`` with ``text`` (appended at the end if the file has no such section).
    A ``--quick`` run is a smoke test, not a measurement: it prints its section and leaves the recorded
    one in docs/benchmarks.md as it was."""
    if path == DOC and "--quick" in sys.argv[1:]:
        print(f"{text.rstrip()}\n\n(--quick: section {name!r} of {DOC} left as it was)")
        return
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)
