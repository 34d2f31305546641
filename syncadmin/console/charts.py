"""Server-rendered SVG line charts for the run history (no JavaScript, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2"]


def line_chart(
    title: str,
    times: Sequence[datetime],
    series: dict[str, Sequence[float]],
    *,
    width: int = 640,
    height: int = 200,
) -> SafeString:
    """One polyline per series over the given times (oldest first), with a legend and y-axis max."""
    pad_left, pad_right, pad_top, pad_bottom = 40, 10, 24, 28
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom
    top = max([1.0, *(v for values in series.values() for v in values)])
    count = len(times)

    def x(i: int) -> float:
        return pad_left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return pad_top + plot_h - plot_h * v / top

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="{pad_left}" y="14" class="chart-title">{escape(title)}</text>',
        f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{pad_left + plot_w}" y2="{pad_top + plot_h}" class="axis"/>',
        f'<line x1="{pad_left}" y1="{pad_top}" x2="{pad_left}" y2="{pad_top + plot_h}" class="axis"/>',
        f'<text x="{pad_left - 4}" y="{pad_top + 4}" text-anchor="end" class="tick">{_number(top)}</text>',
        f'<text x="{pad_left - 4}" y="{pad_top + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    if count:
        parts.append(
            f'<text x="{pad_left}" y="{height - 8}" class="tick">{times[0]:%Y-%m-%d %H:%M}</text>'
            f'<text x="{pad_left + plot_w}" y="{height - 8}" text-anchor="end" class="tick">'
            f"{times[-1]:%Y-%m-%d %H:%M}</text>"
        )
    else:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="tick">No passes yet</text>'
        )
    legend_x = pad_left + 8
    for index, (name, values) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        if count:
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<rect x="{legend_x}" y="{pad_top + 2}" width="10" height="10" fill="{color}"/>'
            f'<text x="{legend_x + 14}" y="{pad_top + 11}" class="legend">{escape(name)}</text>'
        )
        legend_x += 14 + 8 * len(name) + 16
    parts.append("</svg>")
    # Every interpolated text is escaped above.
    return mark_safe("".join(parts))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
