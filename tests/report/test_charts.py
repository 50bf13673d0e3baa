import math
import xml.etree.ElementTree as ET

from moon.report.charts import bar_chart, line_chart


def test_line_chart_is_valid_svg_and_skips_non_finite_points():
    svg = line_chart({"a": [(0, 1.0), (1, math.nan), (2, 0.5)], "b": [(0, None)]}, "T")
    root = ET.fromstring(svg)
    lines = [e for e in root.iter() if e.tag.endswith("polyline")]
    assert len(lines) == 1 and len(lines[0].get("points").split()) == 2
    assert "no data points" in line_chart({"a": []}, "Empty")


def test_bar_widths_are_proportional_and_clipped():
    svg = bar_chart(["x", "y", "z", "w"], {"run": [0.5, 1.0, None, 3.0]}, "T", max_value=1.0)
    bars = [e for e in ET.fromstring(svg).iter()
            if e.tag.endswith("rect") and any(c.tag.endswith("title") for c in e)]
    widths = [float(e.get("width")) for e in bars]
    assert len(widths) == 3 and abs(widths[1] - 2 * widths[0]) < 0.2 and widths[2] == widths[1]
