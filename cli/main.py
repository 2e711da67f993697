"""The ``fs`` command. Each command group lives in its own module; this file wires them, closes the
platform a command opened, and turns errors into one line and an exit code (``cli.exit_codes``: 0 ok,
1 error, 2 usage or a bad argument value, 3 a breach, 4 nothing checked, 130 interrupted).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Annotated

import typer

from fs_platform.cli import (
    backfill_cmds,
    catalog_cmds,
    exit_codes,
    ingest_cmds,
    monitor_cmds,
    observability_cmds,
    parity_cmds,
    registry_cmds,
    serve_cmds,
    stream_cmds,
    tenant_cmds,
)
from fs_platform.cli.state import State

app = typer.Typer(
    name="fs",
    help=(
        "fs: the payments feature platform on Feast (Delta offline store, Redis online store, Kafka ingest)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global(
    ctx: typer.Context,
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo", envvar="FS_REPO", help="Feature repo folder (default: ./feature_repo, or $FS_REPO)."
        ),
    ] = None,
    env: Annotated[
        str,
        typer.Option(
            "--env",
            envvar="FS_ENV",
            help="Environment: dev (default), or an overlay in <repo>/envs/<env>.yaml.",
        ),
    ] = "dev",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
    ] = 0,
    wide: Annotated[
        bool, typer.Option("--wide", help="Tables as wide as their rows (default: wrapped to 100 columns).")
    ] = False,
) -> None:
    if verbose == 0:
        _quiet_library_warnings()
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose == 0:
        # kafka-python logs every failed connect attempt as a warning/error; fs reports an unreachable
        # broker itself, in one line. -v shows the client's own account.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    ctx.obj = State(repo=repo, env=env, as_json=as_json, verbose=verbose, wide=wide)
    ctx.call_on_close(ctx.obj.close)  # when the command ends, also on an error: the platform's clients


def _quiet_library_warnings() -> None:
    """Without -v, drop two kinds of library noise at display time: Feast's "is an experimental
    feature" on every on-demand view or saved dataset call, and libraries' DeprecationWarnings
    (kafka-python's importlib calls). A filter would not hold: Feast modules reset the warning filters
    (``simplefilter("once", ...)``) whenever one of them is first imported, which happens mid-command.
    Notebooks and the library still see both."""
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DeprecationWarning) or (
            issubclass(category, RuntimeWarning) and "is an experimental feature" in str(message)
        ):
            return
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


registry_cmds.register(app)
for _name, _group in (
    ("ingest", ingest_cmds),
    ("backfill", backfill_cmds),
    ("parity", parity_cmds),
    ("catalog", catalog_cmds),
    ("monitor", monitor_cmds),
    ("stream", stream_cmds),
    ("observability", observability_cmds),
    ("tenant", tenant_cmds),
):
    app.add_typer(_group.app, name=_name)
catalog_cmds.register(app)  # also top-level `fs validate`
serve_cmds.register(app)  # top-level `fs serve`


def _one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _error_lines(err) -> list[str]:
    """An error listing several problems (``PolicyError``, a ``SchemaMismatchError`` of ``fs apply``)
    reports one line per problem, then its hint; anything else is squeezed onto one line."""
    problems = getattr(err, "problems", None)
    if not problems:
        return [f"error: {_one_line(str(err))}"]
    return [f"error: {_one_line(p)}" for p in problems] + (
        [f"hint: {_one_line(err.hint)}"] if err.hint else []
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fs`` console script; returns the exit code.

    Typer handles usage errors itself (exit 2); a bad argument value (``InvalidArgument``, e.g. a
    time or duration) is one line and exit 2 too, wherever it was parsed. Everything else that escapes
    a command becomes one line on stderr and exit 1; ``FS_DEBUG=1`` re-raises for the traceback.
    """
    from fs_platform.errors import FsError, InvalidArgument

    debug = os.environ.get("FS_DEBUG") == "1"
    try:
        typer.main.get_command(app).main(args=argv, prog_name="fs", standalone_mode=True)
        return exit_codes.OK
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (exit_codes.OK if e.code is None else exit_codes.ERROR)
    except FsError as e:
        if debug:
            raise
        for line in _error_lines(e):
            typer.echo(line, err=True)
        if isinstance(e, InvalidArgument):
            return exit_codes.USAGE  # a bad value on the command line, whichever command parsed it
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return exit_codes.INTERRUPTED
    except Exception as e:  # the last line of defence: one line, no traceback unless asked
        if debug:
            raise
        typer.echo(
            f"error: {_one_line(f'{type(e).__name__}: {e}')} (FS_DEBUG=1 shows the traceback)", err=True
        )
    return exit_codes.ERROR


def run() -> None:
    sys.exit(main())


from fs_platform.cli import doctor_cmds, ops_cmds  # noqa: E402 - `fs doctor` and `fs ops` (issue #16)

doctor_cmds.register(app)
app.add_typer(ops_cmds.app, name="ops")

from fs_platform.cli import mlops_cmds  # noqa: E402 - `fs trainset` and `fs promote` (issue #18)

mlops_cmds.register(app)


if __name__ == "__main__":
    run()
