"""How every command treats argument values and renders (issue #14.8, #21.6, #21.9): relative times
as positional arguments, one line and exit 2 for a bad time or duration wherever it is given, unknown
views refused, no progress-bar residue, tables within 100 columns."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest

from fs_platform.cli.main import main
from fs_platform.errors import FsError, InvalidArgument
from fs_platform.platform import Platform

pytestmark = pytest.mark.redis

VIEW = "merchant_risk_daily"


def _fs(repo, *args) -> list[str]:
    return ["--repo", str(repo), *args]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["materialize", "2026-13-45", "now"], "start: not a time: '2026-13-45'"),
        (["materialize-incremental", "2026-13-45"], "end: not a time: '2026-13-45'"),
        ([VIEW, "--start", "2026-13-45", "--end", "now"], "--start: not a time: '2026-13-45'"),
        (
            ["backfill", VIEW, "--start", "-2d", "--end", "now", "--chunk", "1x"],
            "--chunk: not a positive duration: '1x'",
        ),
        (
            ["backfill", VIEW, "--start", "-2d", "--end", "now", "--chunk", "0h", "--dry-run"],
            "--chunk: not a positive duration: '0h'",
        ),
        (["validate", VIEW, "--start", "2026-13-45"], "--start: not a time: '2026-13-45'"),
        (
            ["monitor", "drift", VIEW, "--reference", "-2d", "--current", "-1d..now"],
            "--reference: not a window: '-2d'",
        ),
        (["parity", "check", "--as-of", "2026-13-45"], "--as-of: not a time: '2026-13-45'"),
        (["parity", "check", "--allowed-lag", "soon"], "--allowed-lag: not a duration: 'soon'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_a_bad_time_or_duration_is_one_line_and_exit_2_in_every_command(seeded_repo, capsys, args, named):
    if args[0] == VIEW:
        args = ["backfill", *args]
    code = main(_fs(seeded_repo, *args))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err  # no usage box, no progress bar, no traceback
    assert err[0].startswith(f"error: {named}") and "(use " in err[0], err[0]


def test_the_api_raises_the_same_one_line_error_the_cli_prints(seeded_repo, capsys):
    with pytest.raises(InvalidArgument) as api:
        Platform(seeded_repo).materialize("2026-13-45", "now")
    assert isinstance(api.value, FsError) and isinstance(api.value, ValueError)
    assert main(_fs(seeded_repo, "materialize", "2026-13-45", "now")) == 2
    assert capsys.readouterr().err.strip() == f"error: {api.value}"


def test_zero_chunk_is_refused_by_the_api_not_replaced_by_the_default(seeded_repo):
    from fs_platform.backfill.runner import Backfiller

    with pytest.raises(InvalidArgument, match="chunk: not a positive duration"):
        Backfiller(Platform(seeded_repo)).plan(VIEW, "-2d", "now", to="online", chunk=timedelta(0))


def test_unknown_view_in_backfill_status_is_an_error(seeded_repo, capsys):
    assert main(_fs(seeded_repo, "backfill", "status", "NO_SUCH_VIEW")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown feature view 'NO_SUCH_VIEW'" in err[0] and VIEW in err[0]


def test_relative_times_as_positional_arguments_then_tables_fit_100_columns(seeded_repo, capsys):
    """`fs materialize -2d now` without `--` (this one writes to the module's repo), then the human
    tables of status, plan and catalog fit 100 columns unless --wide."""
    assert main(_fs(seeded_repo, "--json", "materialize", "-2d", "now", "--views", VIEW)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chunks_done"] >= 2 and out["rows_written"] > 0
    assert main(_fs(seeded_repo, "materialize-incremental", "-1h", "--views", VIEW)) == 0
    capsys.readouterr()
    for args in (
        ["backfill", "status"],
        ["backfill", VIEW, "--start", "-3d", "--end", "now", "--dry-run"],
        ["catalog", "list"],
    ):
        assert main(_fs(seeded_repo, *args)) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines and max(map(len, lines)) <= 100, (args, max(map(len, lines)))
    assert main(_fs(seeded_repo, "--wide", "backfill", "status")) == 0
    assert max(map(len, capsys.readouterr().out.splitlines())) > 100  # one line per row, for copying


def test_no_progress_bar_line_on_error_when_stderr_is_a_pipe(seeded_repo):
    # The materialize fails after the bar started (the view's table is gone): only the error is left.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fs_platform.cli.main",
            *_fs(seeded_repo, "materialize", "-1d", "now", "--views", "nope"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("error: unknown online feature view 'nope'"), proc.stderr
