"""The dashboard's static parts: the chart palette keeps 3:1 contrast against the white plot
(WCAG 2.1, 1.4.11 non-text contrast), the vendored uPlot comes with its licence and version note,
and the templates load no inline script."""

from __future__ import annotations

import re
from pathlib import Path

from qcdaemon.server.pages import web

STATIC = web.STATIC
TEMPLATES = web.HERE / "templates"


def luminance(hex_colour: str) -> float:
    """WCAG 2.1 relative luminance of an sRGB colour ``#rrggbb``."""
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_contrast_formula_on_known_pairs() -> None:
    assert abs(contrast("#000000", "#ffffff") - 21.0) < 1e-9
    assert abs(contrast("#777777", "#ffffff") - 4.48) < 0.01  # the textbook "just below 4.5" grey


def test_chart_markers_and_lines_contrast_at_least_3_to_1() -> None:
    js = (STATIC / "charts.js").read_text()
    palette = dict(re.findall(r'(\w+): "(#[0-9a-fA-F]{6})"', js.split("const C = {", 1)[1].split("};", 1)[0]))
    assert {"line", "warn", "fail", "grey", "mean", "ann", "sel"} <= set(palette), palette
    for name, colour in palette.items():
        assert contrast(colour, "#ffffff") >= 3.0, (name, colour)
    # failures and warnings also differ from each other and from in-control points by shape (cross,
    # triangle, dot in marker()), not by colour alone
    assert all(f'kind === "{k}"' in js for k in ("fail", "warn", "rejected", "excluded", "training"))


def test_vendored_uplot_has_licence_and_note() -> None:
    vendor = STATIC / "vendor" / "uplot"
    assert "MIT License" in (vendor / "LICENSE").read_text()
    note = (vendor / "README.md").read_text()
    assert "1.6.32" in note and "npm" in note
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 10_000


def test_templates_have_no_inline_scripts_or_handlers() -> None:
    for path in sorted(Path(TEMPLATES).glob("*.html")):
        text = path.read_text()
        assert "<script>" not in text and not re.search(r"\son[a-z]+=", text), path.name
        for src in re.findall(r'<script src="([^"]+)"', text):
            assert src.startswith("/static/"), (path.name, src)
            assert (STATIC / src[len("/static/"):]).exists(), (path.name, src)
