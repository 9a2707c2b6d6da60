"""A report as a list of blocks, rendered to Markdown and to a standalone HTML page.

Blocks are tuples: ("h", level, text), ("p", text), ("list", [text, ...]),
("table", [header, ...], [[cell, ...], ...]), ("img", filename, caption).
Text may use `code` and **bold**, the only inline markup both renderers understand.
"""
from __future__ import annotations

import html
import re

_INLINE = ((re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
           (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"))


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind == "h":
            out.append("#" * args[0] + " " + args[1])
        elif kind == "p":
            out.append(args[0])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in args[0]))
        elif kind == "table":
            head, rows = args
            lines = [head, ["---"] * len(head), *rows]
            out.append("\n".join("| " + " | ".join(_cell(c) for c in r) + " |" for r in lines))
        elif kind == "img":
            out.append(f"![{args[1]}]({args[0]})\n\n*{args[1]}*")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[tuple], title: str) -> str:
    body = []
    for kind, *args in blocks:
        if kind == "h":
            body.append(f"<h{args[0]}>{_inline(args[1])}</h{args[0]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(args[0])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in args[0]) + "</ul>")
        elif kind == "table":
            head, rows = args
            th = "".join(f"<th>{_inline(_cell(c))}</th>" for c in head)
            trs = "".join("<tr>" + "".join(f"<td>{_inline(_cell(c))}</td>" for c in r) + "</tr>"
                          for r in rows)
            body.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")
        elif kind == "img":
            src, cap = html.escape(args[0], quote=True), _inline(args[1])
            body.append(f'<figure><img src="{src}" alt="{html.escape(args[1], quote=True)}">'
                        f"<figcaption>{cap}</figcaption></figure>")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
             "img{max-width:100%}code{background:#f3f3f3}figcaption{font-style:italic}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _inline(text: str) -> str:
    text = html.escape(text.replace("\\|", "|"), quote=False)
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return text
