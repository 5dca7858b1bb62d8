"""What every web page shares: the page frame, safe redirect targets, text checks, links."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from qcdaemon import __version__

esc = html.escape


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}th,td{border-bottom:1px solid #ddd;
padding:.3rem .5rem;text-align:left;font-size:.9rem}th{background:#f4f4f4}.failed{color:#b00020}
.done{color:#176f2c}.running,.processing{color:#8a5a00}.muted{color:#777}form.inline{display:inline}
input{margin:.2rem 0;padding:.3rem}code{background:#f4f4f4;padding:0 .2rem}
pre.err{white-space:pre-wrap;color:#b00020;font-size:.8rem;margin:.2rem 0}.notice{background:#eef6ee;padding:.4rem}
"""


def page(title: str, body: str, head: str = "") -> str:
    """A whole HTML document; ``head`` goes into its head (extra ``<style>``, for one)."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>{head}</head><body>{body}"
        f"<p class=muted>qcdaemon {__version__}</p></body></html>"
    )


def safe_next(value: str | None) -> str:
    """Only same-site paths: never a scheme, host or protocol-relative URL."""
    if not value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if not value.isascii() or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/"  # a Location header cannot carry these (CR/LF would split the header)
    return value


def is_text(value: str) -> bool:
    """Storable text (form bytes that were not UTF-8 arrive as lone surrogates)."""
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def pipeline_url(project: str, pipeline: str) -> str:
    return f"/pipelines/{quote(project, safe='')}/{quote(pipeline, safe='')}"


def pipeline_link(project_slug: str, pl: Mapping[str, Any]) -> str:
    """The home page's pipeline cell: its name linked to its trend page (plain text without a slug)."""
    name = esc(pl["name"])
    return f'<a href="{esc(pipeline_url(project_slug, pl["slug"]))}">{name}</a>' if pl["slug"] else name
