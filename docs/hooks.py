"""mkdocs hooks: the CLI reference page is the ``retmask`` parser's own help, generated at build time."""

from __future__ import annotations

import argparse

MARKER = "<!-- cli-reference -->"


def _help() -> str:
    from retmask_interp.cli import build_parser

    parser = build_parser()
    parts = ["```text", parser.format_help().rstrip(), "```"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        parts += [f"\n## retmask {name}\n", "```text", p.format_help().rstrip(), "```"]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, _help())
    return markdown
