"""Feast's private API is used in one module only (issue #20.6), so a Feast upgrade touches one file."""

from __future__ import annotations

import re

from tests.conftest import ROOT

PRIVATE = re.compile(
    r"\._get_provider\(|_get_cached_request_context|\butils\._[a-z]\w*\("
    r"|^\s*from feast[\w.]* import [^\n]*\b_[a-z]\w*",
    re.M,
)


def test_feast_private_names_appear_only_in_feast_compat():
    offenders = []
    for package in ("fs", "plugins", "backfill", "parity", "cli"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "feast_compat.py":
                continue
            for match in PRIVATE.finditer(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}: {match.group(0).strip()}")
    assert offenders == []
