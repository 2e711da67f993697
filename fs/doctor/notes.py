"""The Markdown incident note of ``fs doctor triage`` (``--note FILE``): scope and window, the likely
causes ranked with their evidence and runbook links, the timeline, every finding, the proposed plan.
Evidence is what the checks record (names, counts, times, versions): never feature values or keys."""

from __future__ import annotations

import json


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _evidence(evidence: dict) -> str:
    text = json.dumps(evidence, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def incident_note(t) -> str:
    lines = [
        f"# Incident note: {t.scope}",
        "",
        f"Window: {t.start:%Y-%m-%d %H:%M} to {t.end:%Y-%m-%d %H:%M} UTC · env `{t.report.env}` · "
        f"views: {', '.join(f'`{v}`' for v in t.views) or '-'}",
        "",
        "Written by `fs doctor triage`: it changes nothing. Review the proposed plan, then approve it with "
        "`fs ops apply` (docs/operations.md).",
        "",
        "## Likely causes (most likely first)",
        "",
    ]
    if not t.causes:
        lines.append("Nothing found: every check of these views is ok in this window.")
    for i, c in enumerate(t.causes, 1):
        actions = ", ".join(f"`{a.id}` {a.kind}" for a in c.actions) or "none"
        lines += [
            f"{i}. **{c.check}** on `{c.subject}`: {c.what}  ",
            f"   evidence: `{_evidence(c.evidence)}`  ",
            f"   runbook: [{c.runbook}]({c.runbook}) · proposed: {actions}",
        ]
    lines += ["", "## Timeline (UTC)", "", "| at | source | subject | what |", "|---|---|---|---|"]
    lines += [f"| {e.at:%H:%M:%S} | {e.source} | {_cell(e.subject)} | {_cell(e.what)} |" for e in t.timeline]
    if not t.timeline:
        lines.append("| - | - | - | nothing recorded in the window |")
    lines += ["", "## Findings", "", "| severity | check | subject | finding |", "|---|---|---|---|"]
    lines += [
        f"| {f.severity} | {f.check} | {_cell(f.subject)} | {_cell(f.message)} |" for f in t.report.findings
    ]
    actions = t.report.actions
    lines += ["", "## Proposed plan", ""]
    if actions:
        lines += [
            "`fs doctor triage ... --plan plan.json` writes these for review; `fs ops apply plan.json` runs "
            "them once approved.",
            "",
            "| action | kind | class | reason | rollback |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{a.id}` | {a.kind} | {a.classification.value} | {_cell(a.reason)} | {_cell(a.rollback)} |"
            for a in actions
        ]
    else:
        lines.append("No typed action proposed: follow the runbook links above.")
    if t.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in t.notes]]
    return "\n".join(lines) + "\n"
