"""``fs trainset build|reproduce`` and ``fs promote`` (issue #18; docs/mlops.md).

fs trainset build --feature-service S --entities FILE|SQL [--name N] [--path P] [--json]
fs trainset reproduce NAME|RUN_ID [--out FILE] [--json]        exit 3 if the rows differ
fs promote --from staging --to prod [--approve ID] [--approved-by NAME] [--no-input] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fs_platform.cli import approval, exit_codes
from fs_platform.cli.args import JsonOpt
from fs_platform.cli.state import state

app = typer.Typer(
    help="Traceable training sets: build one (lineage in MLflow or beside it), reproduce it.",
    no_args_is_help=True,
)


@app.command("build")
def build_cmd(
    ctx: typer.Context,
    feature_service: Annotated[str, typer.Option("--feature-service", help="Feature service to retrieve.")],
    entities: Annotated[
        str,
        typer.Option(
            "--entities",
            help="Entity rows: a parquet/CSV file (join keys, event_timestamp, labels) "
            "or a Spark SQL SELECT.",
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Training set name (default: SERVICE_<UTC time>).")
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            help="Delta location of the saved dataset (default: data/_fs/trainsets/NAME in the repo).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Point-in-time retrieval saved as a Delta saved dataset with its lineage (an MLflow run when set up)."""
    st = state(ctx)
    out = st.output(as_json)
    ts = st.platform.training_set(feature_service, entities, name=name, path=path)
    if out.as_json:
        return out.json(
            {
                "name": ts.name,
                "rows": ts.rows,
                "location": ts.location,
                "version": ts.version,
                "run_id": ts.run_id,
                "lineage": ts.lineage,
            }
        )
    out.table(
        f"training set {ts.name} ({ts.rows} rows)",
        ["source", "Delta table", "version"],
        [[s["source"], s["table"], s["version"]] for s in ts.lineage["sources"]],
    )
    out.text(
        f"saved dataset {ts.location} version {ts.version}; registry {ts.lineage['registry_hash']}; "
        + (f"MLflow run {ts.run_id}" if ts.run_id else "lineage beside it (MLflow not set up)")
    )
    out.text(f"Reproduce with `fs trainset reproduce {ts.run_id or ts.name}`.")


@app.command("reproduce")
def reproduce_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Training set name, or the MLflow run id of its build.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the reproduced rows to this parquet file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a training set on the Delta versions it read; exit 3 if the rows differ from the saved ones."""
    st = state(ctx)
    out = st.output(as_json)
    r = st.platform.reproduce_training_set(ref)
    if out_file is not None:
        r.frame.to_parquet(out_file, index=False)
    summary = {
        "name": r.name,
        "run_id": r.run_id,
        "rows": r.rows,
        "identical": r.identical,
        "registry_changed": r.registry_changed,
        "out": str(out_file) if out_file else None,
    }
    if out.as_json:
        out.json(summary)
    else:
        out.table(
            f"training set {r.name}",
            ["rows", "identical to saved", "registry changed since"],
            [[r.rows, "yes" if r.identical else "NO", "yes" if r.registry_changed else "no"]],
        )
    if not r.identical:
        raise typer.Exit(exit_codes.BREACH)


def promote(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Option("--from", help="Environment whose registered definitions are promoted.")
    ],
    target: Annotated[str, typer.Option("--to", help="Environment that receives them.")],
    approve: Annotated[
        str | None,
        typer.Option("--approve", help="Apply this proposed promotion id (printed by the proposal)."),
    ] = None,
    approved_by: Annotated[
        str | None,
        typer.Option("--approved-by", help="Who approves (CI). Without it: an interactive yes/no."),
    ] = None,
    proposer: Annotated[
        str | None, typer.Option("--proposer", help="Who proposes (default: your user name).")
    ] = None,
    no_input: Annotated[
        bool, typer.Option("--no-input", help="Never ask: without --approved-by only propose.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Registry diff between environments, policy and model checks; applied only with an approver (audited).

    Without --approve or --approved-by it only proposes (exit 0) or refuses (exit 3); `--approve ID`
    applies a proposal once approved (--approved-by, or a yes at the terminal)."""
    from fs_platform.mlops import promote as promotion

    st = state(ctx)
    out = st.output(as_json)
    ask = not (no_input or out.as_json or approved_by) and approval.interactive()
    if approve is None:
        p = promotion.propose(st.repo, source, target, proposer=proposer or approval.user())
        if p.status != "proposed" or not (approved_by or ask):
            return _exit(out, p)
        _render(out, p, shown_only=True)
        approve = p.promotion_id
    approver = approval.approver(
        out, approved_by, no_input or out.as_json, f"promotion {approve} ({source} to {target})"
    )
    _exit(out, promotion.apply(st.repo, source, target, approver=approver, promotion_id=approve))


def _exit(out, p) -> None:
    _render(out, p)
    if p.status == "refused":
        raise typer.Exit(exit_codes.BREACH)


def _render(out, p, shown_only: bool = False) -> None:
    if out.as_json:
        if not shown_only:
            out.json(p.to_dict())
        return
    if p.changes:
        out.table(
            f"fs promote {p.source} -> {p.target} ({p.promotion_id})",
            ["change", "kind", "name", "details"],
            [[c.action, c.kind, c.name, "; ".join(c.details)] for c in p.changes],
        )
    models = (
        "skipped (MLflow not set up)" if p.models_checked is None else f"{p.models_checked} model version(s)"
    )
    out.text(
        f"registry {p.source_hash} -> {p.target_hash}; policy problems: {len(p.policy_problems)}; "
        f"models checked: {models}"
    )
    if shown_only:
        return
    if p.status == "proposed":
        out.text(
            f"Proposed {p.promotion_id}. Apply it with `fs promote --from {p.source} --to {p.target} "
            f"--approve {p.promotion_id} --approved-by NAME`."
        )
    else:
        out.text(f"{p.status}: {p.message}" if p.message else p.status)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="trainset")
    root.command("promote")(promote)
