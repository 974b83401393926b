"""Dependency-free SVG charts for a home-health diary (vitals and symptom severity over time).

The output is a standalone, deterministic SVG document: the same series always gives the same bytes,
so reports that embed it can be compared and cached.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

LINE, BAND, TEXT, AXIS, GRID = "#1f6feb", "#2da44e", "#24292f", "#57606a", "#d0d7de"
# Our own month names: "%b" follows the process locale, and output must not depend on it.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MINUTE, HOUR, DAY = 60, 3600, 86400
TIME_STEPS = (MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
              HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR)
DAY_STEPS = (DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY, 91 * DAY, 182 * DAY, 364 * DAY)
# Characters XML 1.0 forbids even when escaped; a stray one would make the whole document unreadable.
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True)
class Series:
    """One measured quantity over time for one person."""

    title: str
    unit: str
    points: tuple[tuple[datetime, float], ...]
    normal: tuple[float, float] | None = None


def _esc(text: str) -> str:
    return html.escape(_BAD_XML.sub("", text), quote=True)


def _num(x: float) -> str:
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _exact(v: float) -> str:
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s


def _y_ticks(lo: float, hi: float) -> list[float]:
    """4-6 evenly spaced 1/2/5 x 10^k values covering lo..hi."""
    k = math.floor(math.log10((hi - lo) / 5))
    steps = sorted(m * 10.0 ** e for e in (k - 1, k, k + 1) for m in (1, 2, 5))
    for step in steps:
        first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
        if last - first + 1 <= 6:
            break
    while last - first + 1 < 4:
        # Too few ticks for a readable scale: grow upwards, and downwards only if that stays >= 0
        # when the data does (a severity scale should not show negative ticks).
        if (last - first) % 2 == 0 or (lo >= 0 and (first - 1) * step < 0):
            last += 1
        else:
            first -= 1
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [round(i * step, decimals) + 0.0 for i in range(first, last + 1)]


def _tick_label(v: float, ticks: list[float], unit: str) -> str:
    step = ticks[1] - ticks[0]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    text = f"{v:.{decimals}f}"
    return f"{text} {unit}" if unit else text


def _x_ticks(t0: float, t1: float, offset: float) -> tuple[list[float], bool]:
    """Tick instants (epoch seconds) aligned to local clock time, and whether to label them with the clock."""
    clock = t1 - t0 <= DAY
    step = next((s for s in (TIME_STEPS if clock else DAY_STEPS) if (t1 - t0) / s <= 5), DAY_STEPS[-1])
    first, last = math.ceil((t0 + offset) / step), math.floor((t1 + offset) / step)
    return [i * step - offset for i in range(first, last + 1)], clock


def _x_label(ts: float, tz: tzinfo | None, clock: bool) -> str:
    d = datetime.fromtimestamp(ts, tz)
    return f"{d.hour:02d}:{d.minute:02d}" if clock else f"{d.day:02d} {MONTHS[d.month - 1]}"


def _document(width: int, height: int, title: str, body: list[str]) -> str:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11" '
            f'fill="{TEXT}">')
    return "\n".join([head, f"<title>{_esc(title)}</title>", *body, "</svg>"]) + "\n"


def series_svg(series: Series, width: int = 640, height: int = 240) -> str:
    """A standalone SVG line chart of one series (points, line, axes, ticks, the normal band)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"chart size must be positive, got {width}x{height}")
    for when, _ in series.points:
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"{series.title}: reading at {when.isoformat()} has no timezone; "
                             "give timezone-aware datetimes")
    if series.normal is not None:
        band_lo, band_hi = series.normal
        if not (math.isfinite(band_lo) and math.isfinite(band_hi) and band_lo <= band_hi):
            raise ValueError(f"{series.title}: normal range must be two finite numbers, low first")
    name = f"{series.title} ({series.unit})" if series.unit else series.title
    # nan/inf readings are meter glitches or gaps, not data: leave them out rather than fail.
    points = sorted((t, float(v)) for t, v in series.points if math.isfinite(float(v)))
    if not points:
        return _document(width, height, name, [
            f'<text x="{_num(width / 2)}" y="{_num(height / 2)}" text-anchor="middle">no readings yet</text>'])

    values = [v for _, v in points] + (list(series.normal) if series.normal else [])
    lo, hi = min(values), max(values)
    if not math.isfinite(hi - lo):
        raise ValueError(f"{series.title}: values too large to plot")
    if hi == lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    ticks = _y_ticks(lo, hi)
    y_lo, y_hi = ticks[0], ticks[-1]
    labels = [_tick_label(v, ticks, series.unit) for v in ticks]

    times = [t.timestamp() for t, _ in points]
    t0, t1 = times[0], times[-1]
    if t1 == t0:  # one instant: centre it in a day so the x axis has a scale
        t0, t1 = t0 - 12 * HOUR, t1 + 12 * HOUR
    tz = points[0][0].tzinfo
    offset = (points[0][0].utcoffset() or timedelta()).total_seconds()
    x_ticks, clock = _x_ticks(t0, t1, offset)

    # Margins: the left one fits the longest y label at roughly 6.5 px per character of 11px text.
    left, right, top, bottom = 12 + 6.5 * max(len(s) for s in labels), 16.0, 24.0, 28.0
    pw, ph = max(width - left - right, 1.0), max(height - top - bottom, 1.0)

    def px(ts: float) -> float:
        return left + (ts - t0) / (t1 - t0) * pw

    def py(v: float) -> float:
        return top + (y_hi - v) / (y_hi - y_lo) * ph

    body = [f'<text x="{_num(left)}" y="16" font-weight="bold">{_esc(name)}</text>']
    if series.normal is not None:
        b_top, b_bottom = py(series.normal[1]), py(series.normal[0])
        body.append(f'<rect class="normal" x="{_num(left)}" y="{_num(b_top)}" width="{_num(pw)}" '
                    f'height="{_num(b_bottom - b_top)}" fill="{BAND}" fill-opacity="0.15"/>')
    for v, label in zip(ticks, labels):
        y = _num(py(v))
        body.append(f'<line x1="{_num(left)}" y1="{y}" x2="{_num(left + pw)}" y2="{y}" stroke="{GRID}"/>')
        body.append(f'<text class="y-tick" x="{_num(left - 6)}" y="{_num(py(v) + 4)}" '
                    f'text-anchor="end">{_esc(label)}</text>')
    for ts in x_ticks:
        x = _num(px(ts))
        body.append(f'<line x1="{x}" y1="{_num(top + ph)}" x2="{x}" y2="{_num(top + ph + 4)}" stroke="{AXIS}"/>')
        body.append(f'<text class="x-tick" x="{x}" y="{_num(top + ph + 16)}" '
                    f'text-anchor="middle">{_x_label(ts, tz, clock)}</text>')
    body.append(f'<line x1="{_num(left)}" y1="{_num(top)}" x2="{_num(left)}" y2="{_num(top + ph)}" stroke="{AXIS}"/>')
    body.append(f'<line x1="{_num(left)}" y1="{_num(top + ph)}" x2="{_num(left + pw)}" '
                f'y2="{_num(top + ph)}" stroke="{AXIS}"/>')
    coords = [(_num(px(ts)), _num(py(v))) for ts, (_, v) in zip(times, points)]
    if len(coords) > 1:
        body.append(f'<polyline fill="none" stroke="{LINE}" stroke-width="1.5" '
                    f'points="{" ".join(f"{x},{y}" for x, y in coords)}"/>')
    for (x, y), (when, v) in zip(coords, points):
        tip = f"{_exact(v)} {series.unit} at {when.isoformat()}" if series.unit else \
            f"{_exact(v)} at {when.isoformat()}"
        body.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{LINE}"><title>{_esc(tip)}</title></circle>')
    return _document(width, height, name, body)
