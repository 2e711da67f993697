"""The one writer of docs/benchmarks.md: each benchmark script owns a section between markers
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` and rewrites only that section."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def write_section(name: str, text: str, path: Path = DOC) -> None:
    """Replace section ``name`` with ``text`` (appended at the end if the file has no such section)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)
