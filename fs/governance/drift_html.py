"""A drift report for humans: one self-contained HTML page, reference vs current histograms as
inline SVG (no plotting dependency, opens anywhere, safe to attach to an incident)."""

from __future__ import annotations

from html import escape

from fs_platform.governance.drift import DriftReport, FeatureDrift

_REF, _CUR = "#8da0cb", "#fc8d62"
_W, _H, _PAD = 640, 180, 28
_STYLE = (
    "body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}tr.bad{background:#fde0dd}"
)
_HEADER = (
    "<tr><th>feature</th><th>kind</th><th>PSI / threshold</th><th>KS / threshold</th>"
    "<th>null rate</th><th></th></tr>"
)


def _svg(fd: FeatureDrift) -> str:
    h = fd.histogram
    n = max(len(h.labels), 1)
    top = max([*h.reference, *h.current, 1e-9])
    slot = (_W - 2 * _PAD) / n
    bar = slot * 0.38
    parts = [
        f'<svg width="{_W}" height="{_H + 40}" role="img" aria-label="{escape(fd.feature)} histogram">',
        f'<line x1="{_PAD}" y1="{_H}" x2="{_W - _PAD}" y2="{_H}" stroke="#999"/>',
    ]
    for i, (label, r, c) in enumerate(zip(h.labels, h.reference, h.current, strict=True)):
        x = _PAD + i * slot
        for offset, share, color, who in ((0.1, r, _REF, "reference"), (0.5, c, _CUR, "current")):
            height = (share / top) * (_H - 10)
            parts.append(
                f'<rect x="{x + slot * offset:.1f}" y="{_H - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{color}">'
                f"<title>{escape(label)} {who}: {share:.1%}</title></rect>"
            )
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{_H + 14}" font-size="9" text-anchor="middle">'
            f"{escape(label[:14])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: DriftReport) -> str:
    ref = f"{report.reference[0].isoformat()} .. {report.reference[1].isoformat()}"
    cur = f"{report.current[0].isoformat()} .. {report.current[1].isoformat()}"
    rows = "".join(
        f'<tr class="{"bad" if f.drifted else ""}">'
        f"<td>{escape(f.feature)}{' (PII, masked)' if f.pii else ''}</td>"
        f"<td>{f.kind}</td><td>{f.psi:.3f} / {f.psi_threshold}</td>"
        f"<td>{'-' if f.ks is None else f'{f.ks:.3f} / {f.ks_threshold}'}</td>"
        f"<td>{f.reference_null_rate:.1%} → {f.current_null_rate:.1%}</td>"
        f"<td>{'DRIFT' if f.drifted else 'ok'}</td></tr>"
        for f in report.features
    )
    charts = "".join(
        f"<h3>{escape(f.feature)} — {'DRIFT' if f.drifted else 'ok'}</h3>{_svg(f)}" for f in report.features
    )
    drifted = escape(", ".join(report.drifted) or "none")
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>Drift: {escape(report.view)}</title>\n'
        f"<style>{_STYLE}</style>\n"
        f"</head><body><h1>Drift report: {escape(report.view)}</h1>\n"
        f"<p>Reference [{escape(ref)}) vs current [{escape(cur)}). Drifted: {drifted}.</p>\n"
        f'<p><span style="color:{_REF}">■</span> reference <span style="color:{_CUR}">■</span> '
        "current (share of non-null rows)</p>\n"
        f"<table>{_HEADER}{rows}</table>\n"
        f"{charts}</body></html>\n"
    )
