"""docs/benchmarks.md is written by one function: a section replaced in place, a --quick run kept out."""

from __future__ import annotations

import sys

from tests.benchmarks import report

A_OLD = "<!-- a:start -->\nold a\n<!-- a:end -->\n"
A_NEW = "<!-- a:start -->\nnew a\n<!-- a:end -->\n"
B = "<!-- b:start -->\nb\n<!-- b:end -->\n"
C = "<!-- c:start -->\nc\n<!-- c:end -->\n"


def test_a_section_is_replaced_in_place_and_a_new_one_appended(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{A_OLD}\n{B}")
    report.write_section("a", "new a\n", doc)
    report.write_section("c", "c", doc)
    assert doc.read_text() == f"# Benchmarks\n\n{A_NEW}\n{B}\n{C}"


def test_a_quick_run_prints_its_section_and_leaves_the_recorded_one(monkeypatch, capsys):
    before = report.DOC.read_text()
    monkeypatch.setattr(sys, "argv", ["bench_x.py", "--quick"])
    report.write_section("ingest", "quick numbers")
    assert report.DOC.read_text() == before
    assert "quick numbers" in capsys.readouterr().out
