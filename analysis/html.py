"""report.html: the report as one self-contained page, readable offline and shared as one file.

The page is report.md rendered by markdown-it-py (CommonMark with tables, as GitHub renders it),
every figure it shows inlined as a base64 PNG, and a small style sheet: no script, font, style
or image is fetched from anywhere. Links to the CSV files beside it stay relative (they open
where the folder is shared with it).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1.5em; line-height: 1.45; color: #1f2328; background: #fff; }
h1 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d8dee4; padding-bottom: .25em; margin-top: 2em; }
blockquote { margin: 1em 0; padding: .2em 1em; color: #3b4046; border-left: .25em solid #0969da;
             background: #f6f8fa; font-size: 1.05em; }
table { border-collapse: collapse; display: block; overflow-x: auto; margin: 1em 0;
        font-variant-numeric: tabular-nums; font-size: .9em; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
code { background: #eff1f3; padding: .1em .3em; border-radius: 4px; font-size: .9em; }
"""

_IMG = re.compile(r'<img src="([^"/\\:]+\.png)"')


def _inline(body: str, folder: Path) -> str:
    """Every ``<img src="NAME.png">`` of a file in ``folder`` as a data: URI (base64 PNG)."""
    def data_uri(m: re.Match) -> str:
        path = folder / html.unescape(m.group(1))
        if not path.is_file():
            return m.group(0)
        return f'<img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode("ascii")}"'

    return _IMG.sub(data_uri, body)


def render(markdown: str, folder: Path, title: str) -> str:
    """The page of ``markdown`` (a report.md), its figures read from ``folder``."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{_inline(body, folder)}</body>\n</html>\n")


def write(markdown: str, folder: Path, title: str, name: str = "report.html") -> Path:
    """Write ``folder/name`` (see ``render``); returns its path."""
    path = folder / name
    path.write_text(render(markdown, folder, title), encoding="utf-8")
    return path
