"""#20.4: the one rule for quoting a foreign error (``fs_platform.scrub``), as the backfill ledger, the Delta
store's query errors and the SQL registry's connection errors use it."""

from __future__ import annotations

from fs_platform.errors import SourceNotFoundError
from fs_platform.locks import _server_reason
from fs_platform.scrub import scrub, summary


def test_quoted_literals_and_value_like_tokens_go_the_rest_stays():
    text = (
        """cannot cast 'abc' to "BIGINT" for alice@example.com (row 42, key=7, [1, 2], {x}) here"""
        "\nsecond line"
    )
    assert scrub(text) == "cannot cast … to … for … (row … … … … … here"
    assert scrub("\n\n  plain words only  ") == "plain words only"
    assert len(scrub("x" * 500)) == 200


def test_secrets_go_even_inside_plain_words():
    assert scrub("login hunter to db failed", secrets=("hunter", None, "")) == "login … to db failed"


def test_summary_keeps_the_type():
    assert summary(KeyError("4242")) == "KeyError: …"
    assert summary(RuntimeError("")) == "RuntimeError"


def test_backfill_chunks_use_the_rule_and_keep_platform_errors():
    from fs_platform.backfill.reporting import failure_message

    assert failure_message(ValueError('bad "x" for bob@example.com')) == "ValueError: bad … for …"
    platform_error = SourceNotFoundError("the Delta table of 'v' does not exist")
    assert failure_message(platform_error) == "SourceNotFoundError: the Delta table of 'v' does not exist"


def test_registry_connection_reason_is_scrubbed():
    error = RuntimeError(
        'connection failed\nFATAL:  password authentication failed for user "tenant_a" pw s3cr3t'
    )
    reason = _server_reason(error, "s3cr3t")
    assert reason == "password authentication failed for user … pw …"
