"""mkdocs hooks: the CLI reference page is the ``retmask`` parser's own help, generated at build time."""

from __future__ import annotations

import argparse

MARKER = "<!-- cli-reference -->"


def _help() -> str:
    from retmask_interp.cli import build_parser

    parser = build_parser()
    parts = ["```text", parser.format_help().rstrip(), "```"]

    def walk(
        p: argparse.ArgumentParser, words: tuple[str, ...]
    ) -> None:  # nested commands too (retmask study X)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    title = " ".join(("retmask", *words, name))
                    parts.extend([f"\n## {title}\n", "```text", sub.format_help().rstrip(), "```"])
                    walk(sub, (*words, name))

    walk(parser, ())
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, _help())
    return markdown
