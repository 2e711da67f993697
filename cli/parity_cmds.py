"""``fs parity``: offline–online parity checks and served-feature skew (exit 0 ok, 3 parity breach, 4 nothing
to compare, 1 error: ``cli.exit_codes``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fs_platform.cli import exit_codes
from fs_platform.cli.args import JsonOpt, ViewsOpt, duration_option, time_option
from fs_platform.cli.state import state
from fs_platform.errors import InvalidArgument

app = typer.Typer(
    help="Offline–online parity: do served features match what training sees?", no_args_is_help=True
)


def _tolerances(specs: list[str] | None):
    from fs_platform.parity.compare import Tolerances

    try:
        return Tolerances.parse(specs or [])
    except ValueError as e:
        raise InvalidArgument(f"--tolerance: {e}") from None


Tolerance = Annotated[
    list[str] | None,
    typer.Option(
        "--tolerance", help="Float tolerance: abs=1e-6, rel=1e-4, nan_is_null, or FEATURE:abs=0.01 (repeat)."
    ),
]
MaxRate = Annotated[
    float,
    typer.Option(
        "--max-mismatch-rate", min=0.0, max=1.0, help="Allowed share of non-tolerated mismatches per view."
    ),
]


@app.command("check")
def check_cmd(
    ctx: typer.Context,
    views: ViewsOpt = None,
    feature_service: Annotated[
        str | None, typer.Option("--feature-service", help="Check the views of this feature service.")
    ] = None,
    sample: Annotated[int, typer.Option("--sample", min=1, help="Entity keys sampled per view.")] = 1000,
    entities: Annotated[
        Path | None,
        typer.Option("--entities", help="CSV/parquet/JSON-lines file of entity keys (replaces sampling)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed: same seed, same data, same keys.")] = 0,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Read time assumed for ttl and the offline cut-off (default: now)."),
    ] = None,
    tolerance: Tolerance = None,
    max_mismatch_rate: MaxRate = 0.0,
    allowed_lag: Annotated[
        str | None,
        typer.Option(
            "--allowed-lag",
            help="How far offline may trail stream writes (default: the view's freshness_sla).",
        ),
    ] = None,
    lookback: Annotated[
        str | None,
        typer.Option(
            "--lookback", help="Sample keys active in this window before --as-of (default: the view's ttl)."
        ),
    ] = None,
    examples: Annotated[
        int, typer.Option("--examples", min=0, help="Worst examples shown per view and class.")
    ] = 5,
    prom_file: Annotated[
        Path | None, typer.Option("--prom-file", help="Also write the rates as a Prometheus textfile here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare what the online store serves with what the offline store says it should serve."""
    from fs_platform.parity import check, write_prometheus

    st = state(ctx)
    report = check(
        st.platform.store,
        views=views,
        feature_service=feature_service,
        sample=sample,
        entities=entities,
        seed=seed,
        as_of=time_option(as_of, "--as-of"),
        tolerances=_tolerances(tolerance),
        max_mismatch_rate=max_mismatch_rate,
        allowed_lag=duration_option(allowed_lag, "--allowed-lag"),
        lookback=duration_option(lookback, "--lookback", positive=True),
        examples=examples,
    )
    if prom_file:
        write_prometheus(report, str(prom_file))
    out = st.output(as_json)
    if out.as_json:
        out.json(report.to_dict())
    else:
        out.table(
            f"Parity at {report.as_of.isoformat()} (seed {report.seed})",
            list(report.SUMMARY_COLUMNS),
            report.summary_rows(),
        )
        lines = report.example_lines()
        if lines:
            out.text("\n[bold]Worst examples[/bold] (PII-classified values masked)")
            for line in lines:
                out.console.print(line, markup=False)
        for name, why in report.skipped.items():
            out.text(f"skipped {name}: {why}")
        t = report.timings
        out.text(
            f"online reads {t.online_read_s:.2f}s, offline {t.offline_s:.2f}s, sampling {t.sampling_s:.2f}s, "
            f"compare {t.compare_s:.2f}s"
        )
        for v in (v for v in report.views if v.view in report.no_data):
            if v.entities == 0:  # e.g. a header-only --entities file
                out.text(
                    f"no data: no entities to check for {v.view} "
                    "(an empty --entities file, or nothing to sample)"
                )
                continue
            out.text(
                f"no data: no sampled entity of {v.view} has a row online or offline (check the entity "
                f"keys, the view's source freshness, or --lookback)"
            )
        out.text(f"verdict: {report.verdict.upper()} (max mismatch rate {report.max_mismatch_rate:.2%})")
    if report.breach:
        raise typer.Exit(exit_codes.BREACH)
    if report.no_data:  # no sampled entity had a row on either side of some view: nothing was checked
        raise typer.Exit(exit_codes.NO_DATA)


@app.command("replay")
def replay_cmd(
    ctx: typer.Context,
    view: Annotated[
        str, typer.Option("--view", help="Stream-fed feature view to replay.")
    ] = "customer_txn_aggregates",
    events: Annotated[
        Path | None,
        typer.Option("--events", help="Parquet/CSV/JSON-lines file of raw events (default: generated)."),
    ] = None,
    transform: Annotated[
        str | None,
        typer.Option(
            "--transform", help="Stream transformation file.py:Name in the repo (default: ingest.yaml's)."
        ),
    ] = None,
    customers: Annotated[
        int, typer.Option("--customers", min=1, help="Generated customers (without --events).")
    ] = 500,
    days: Annotated[
        int, typer.Option("--days", min=1, help="Days of generated events (without --events).")
    ] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated events.")] = 7,
    tolerance: Tolerance = None,
    max_mismatch_rate: MaxRate = 0.0,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Worst examples shown per feature.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Run a window of raw events through the stream transformation and the batch definition and compare."""
    from fs_platform.parity.replay import replay_view

    st = state(ctx)
    report = replay_view(
        st.platform,
        view,
        events=events,
        transform=transform,
        customers=customers,
        days=days,
        seed=seed,
        tolerances=_tolerances(tolerance),
        max_mismatch_rate=max_mismatch_rate,
        examples=examples,
    )
    out = st.output(as_json)
    if out.as_json:
        out.json(report.to_dict())
    else:
        out.text(f"stream path: {report.stream_path}")
        out.text(
            f"{report.view}: {report.events} events -> {report.stream_rows} stream rows, "
            f"{report.batch_rows} batch rows "
            f"({report.stream_only} stream-only, {report.batch_only} batch-only)"
        )
        out.table(
            "Replay parity",
            ["feature", "compared", "matched", "value_mismatch", "type_mismatch"],
            [[f.feature, f.compared, f.matched, f.value_mismatch, f.type_mismatch] for f in report.features],
        )
        if report.examples:
            out.text("\n[bold]Worst examples[/bold]")
            for e in report.examples:
                out.console.print(
                    f"{e.outcome}  {e.feature}  {e.entity}  at {e.event_timestamp}  "
                    f"stream={e.stream_value}  batch={e.batch_value}",
                    markup=False,
                )
        out.text(f"verdict: {report.verdict.upper()} (mismatch rate {report.mismatch_rate:.2%})")
    if report.breach:
        raise typer.Exit(exit_codes.BREACH)


@app.command("skew")
def skew_cmd(
    ctx: typer.Context,
    feature_service: Annotated[
        str, typer.Option("--feature-service", help="Feature service whose served vectors are compared.")
    ],
    since: Annotated[
        str, typer.Option("--since", help="Window of served rows ending at --until: 15m, 2h, 7d.")
    ] = "2h",
    until: Annotated[str | None, typer.Option("--until", help="End of the window (default: now).")] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="One report per model_version (or model_name, model): shadow and canary."),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option("--table", help="Served-feature log (default: serve.yaml's served_log.path)."),
    ] = None,
    max_rows: Annotated[
        int, typer.Option("--max-rows", min=1, help="Logged rows compared at most (a seeded sample).")
    ] = 10_000,
    seed: Annotated[
        int, typer.Option("--seed", help="Sampling seed when the window holds more than --max-rows.")
    ] = 0,
    tolerance: Tolerance = None,
    max_mismatch_rate: MaxRate = 0.0,
    examples: Annotated[
        int, typer.Option("--examples", min=0, help="Worst examples shown per view and class.")
    ] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Compare logged served features with the offline point-in-time values at the served time.

    Reads the served-feature log that fs serve writes (served_log in serve.yaml). Exit 0: no skew above
    --max-mismatch-rate; 3: skew; 4: nothing logged in the window.
    """
    from fs_platform.parity.skew import skew

    st = state(ctx)
    report = skew(
        st.platform.store,
        feature_service,
        since=duration_option(since, "--since", positive=True),
        until=time_option(until, "--until"),
        by=by,
        table=table,
        max_rows=max_rows,
        seed=seed,
        tolerances=_tolerances(tolerance),
        max_mismatch_rate=max_mismatch_rate,
        examples=examples,
    )
    out = st.output(as_json)
    if out.as_json:
        out.json(report.to_dict())
    else:
        out.text(
            f"{report.logged_rows} rows of {feature_service} served {report.start:%Y-%m-%d %H:%M} .. "
            f"{report.end:%Y-%m-%d %H:%M} UTC in {report.location}"
        )
        for name, group in report.groups.items():
            out.table(f"Skew: {name}", list(group.SUMMARY_COLUMNS), group.summary_rows())
            for line in group.example_lines():
                out.console.print(line, markup=False)
        if report.pair is not None:
            p = report.pair
            out.text(
                f"{p.a} vs {p.b}: {p.rows} entity rows served to both (same request id), "
                f"{p.mismatched} of {p.compared} feature values differ"
            )
        for name, why in report.skipped.items():
            out.text(f"skipped {name}: {why}")
        if not report.groups:
            out.text("no data: no logged rows in the window (is served_log.sample > 0 in serve.yaml?)")
        out.text(f"verdict: {report.verdict.upper()} (max mismatch rate {report.max_mismatch_rate:.2%})")
    if report.breach:
        raise typer.Exit(exit_codes.BREACH)
    if report.verdict == "no_data":
        raise typer.Exit(exit_codes.NO_DATA)
