"""The diary chart: well-formed, deterministic SVG for ordinary and awkward series."""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from diagnostician.consult.plot import Series, _y_ticks, series_svg

NS = {"s": "http://www.w3.org/2000/svg"}
T0 = datetime(2024, 3, 5, 8, 0, tzinfo=timezone.utc)


def temps(*values: float, hours: float = 6) -> tuple[tuple[datetime, float], ...]:
    return tuple((T0 + timedelta(hours=hours * i), v) for i, v in enumerate(values))


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox")
    return root


def texts(root: ET.Element, cls: str) -> list[str]:
    return [t.text or "" for t in root.iterfind("s:text", NS) if t.get("class") == cls]


def polyline_xs(root: ET.Element) -> list[float]:
    line = root.find("s:polyline", NS)
    assert line is not None
    return [float(pair.split(",")[0]) for pair in (line.get("points") or "").split()]


def test_basic_chart_structure() -> None:
    series = Series("Temperature", "°C", temps(36.8, 37.4, 38.2, 37.0, hours=24), normal=(36.1, 37.9))
    root = parse(series_svg(series))
    assert root.findtext("s:title", namespaces=NS) == "Temperature (°C)"
    circles = root.findall("s:circle", NS)
    assert len(circles) == 4
    assert circles[2].findtext("s:title", namespaces=NS) == "38.2 °C at 2024-03-07T08:00:00+00:00"
    y_labels = texts(root, "y-tick")
    assert 4 <= len(y_labels) <= 6
    assert all(label.endswith(" °C") for label in y_labels)
    values = [float(label.split()[0]) for label in y_labels]
    assert values[0] <= 36.1 and values[-1] >= 38.2  # covers the data and the band
    step = values[1] - values[0]
    assert round(step / 10 ** math.floor(math.log10(step)), 6) in (1, 2, 5)
    assert texts(root, "x-tick") == ["06 Mar", "07 Mar", "08 Mar"]
    assert len(root.findall("s:rect", NS)) == 1


def test_band_only_when_normal_given() -> None:
    root = parse(series_svg(Series("Pain", "/10", temps(3, 5, 4))))
    assert root.findall("s:rect", NS) == []
    y_values = [float(label.split()[0]) for label in texts(root, "y-tick")]
    assert min(y_values) >= 0  # a 0-10 scale does not grow negative ticks


def test_within_one_day_uses_clock_labels() -> None:
    root = parse(series_svg(Series("Pulse", "bpm", temps(70, 88, 75, hours=2))))
    labels = texts(root, "x-tick")
    assert labels and all(len(s) == 5 and s[2] == ":" for s in labels)


def test_non_finite_points_skipped() -> None:
    series = Series("SpO2", "%", temps(97, math.nan, 95, math.inf, -math.inf, 96))
    svg = series_svg(series)
    root = parse(svg)
    assert len(root.findall("s:circle", NS)) == 3
    assert "nan" not in svg and "inf" not in svg


def test_title_escaped() -> None:
    title = 'Peak flow <L/min> & "x"'
    svg = series_svg(Series(title, "L/min", temps(410, 380)))
    root = parse(svg)
    assert root.findtext("s:title", namespaces=NS) == f"{title} (L/min)"
    assert "<L/min>" not in svg


def test_unit_and_control_characters_escaped() -> None:
    root = parse(series_svg(Series("Odd\x01", "<&'>", temps(1, 2), normal=(0.5, 1.5))))
    assert all(label.endswith(" <&'>") for label in texts(root, "y-tick"))


@pytest.mark.parametrize("points", [temps(37.2), temps(5, 5, 5), temps(0, 0), temps(-3.5)])
def test_single_point_and_equal_values(points: tuple[tuple[datetime, float], ...]) -> None:
    svg = series_svg(Series("Weight", "kg", points))
    root = parse(svg)
    assert len(root.findall("s:circle", NS)) == len(points)
    assert "nan" not in svg and "inf" not in svg
    for c in root.findall("s:circle", NS):
        assert math.isfinite(float(c.get("cx") or "x")) and math.isfinite(float(c.get("cy") or "x"))
    assert 4 <= len(texts(root, "y-tick")) <= 6


def test_single_point_spans_a_day() -> None:
    root = parse(series_svg(Series("Temperature", "°C", temps(37.2))))
    assert root.find("s:polyline", NS) is None
    labels = texts(root, "x-tick")
    assert labels == ["00:00", "06:00", "12:00", "18:00"]  # 08:00 +- 12 h, in 6 h steps
    circle = root.find("s:circle", NS)
    x_axis = root.findall("s:line", NS)[-1]
    middle = (float(x_axis.get("x1") or "") + float(x_axis.get("x2") or "")) / 2
    assert circle is not None and abs(float(circle.get("cx") or "") - middle) <= 0.01  # centred


def test_empty_series_says_no_readings() -> None:
    for points in [(), temps(math.nan)]:
        root = parse(series_svg(Series("Temperature", "°C", points)))
        assert [t.text for t in root.iterfind("s:text", NS)] == ["no readings yet"]
        assert root.findtext("s:title", namespaces=NS) == "Temperature (°C)"


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValueError, match="timezone"):
        series_svg(Series("Temperature", "°C", ((datetime(2024, 3, 5, 8, 0), 37.0),)))


def test_bad_normal_range_rejected() -> None:
    with pytest.raises(ValueError, match="normal range"):
        series_svg(Series("Temperature", "°C", temps(37), normal=(38.0, 36.0)))


def test_deterministic() -> None:
    series = Series("Temperature", "°C", temps(36.81234, 37.4, 38.2), normal=(36.1, 37.9))
    assert series_svg(series) == series_svg(series)
    numbers = [float(c.get("cy") or "") for c in parse(series_svg(series)).findall("s:circle", NS)]
    assert all(round(n, 2) == n for n in numbers)


def test_out_of_order_points_drawn_in_time_order() -> None:
    ordered = temps(36.5, 37.9, 37.1, 38.4, 36.9)
    shuffled = (ordered[3], ordered[0], ordered[4], ordered[2], ordered[1])
    svg = series_svg(Series("Temperature", "°C", shuffled))
    xs = polyline_xs(parse(svg))
    assert xs == sorted(xs) and len(set(xs)) == len(xs) == 5
    assert svg == series_svg(Series("Temperature", "°C", ordered))


def test_mixed_timezones_sorted_by_instant() -> None:
    plus2 = timezone(timedelta(hours=2))
    points = ((datetime(2024, 3, 5, 11, 0, tzinfo=plus2), 2.0), (datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc), 1.0))
    root = parse(series_svg(Series("Pain", "", points)))
    xs = polyline_xs(root)
    assert xs == sorted(xs)
    assert root.findall("s:circle", NS)[0].findtext("s:title", namespaces=NS) == "2 at 2024-03-05T11:00:00+02:00"


def test_nice_ticks_always_four_to_six() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        lo = rng.uniform(-1000, 1000) * 10 ** rng.randint(-3, 3)
        hi = lo + rng.uniform(0.001, 1000) * 10 ** rng.randint(-3, 3)
        ticks = _y_ticks(lo, hi)
        assert 4 <= len(ticks) <= 6, (lo, hi, ticks)
        assert ticks[0] <= lo + 1e-9 * abs(lo) and ticks[-1] >= hi - 1e-9 * abs(hi), (lo, hi, ticks)
