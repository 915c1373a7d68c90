"""Build the general instruction prompt set (``retmask_interp.data.instructions``) and print or save its make-up.

    python studies/instruction_prompts/instruction_prompts.py                       # the make-up table of the default set
    python studies/instruction_prompts/instruction_prompts.py --out prompts.jsonl   # also write the prompts (one JSON object a line)
    python studies/instruction_prompts/instruction_prompts.py --write-docs          # refresh the tables in the docstring and the docs

JSONL records: ``{"id", "kind", "split", "template", "prompt"}`` (``pairs.load_prompts`` reads ``prompt`` and ``id``).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from retmask_interp.core.io import atomic_write_text
from retmask_interp.data import instructions
from retmask_interp.data.instructions import (
    InstructionConfig,
    instruction_pool,
    instruction_prompts,
    summarize_prompts,
    summary_markdown,
)

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "studies/instruction_prompts/README.md", Path(instructions.__file__))
START, END = "<!-- instruction-summary:start -->", "<!-- instruction-summary:end -->"


def make_up(config: InstructionConfig) -> str:
    """The Markdown block written between the markers: the table and one line of totals."""
    prompts = instruction_prompts(config)
    summary = summarize_prompts(prompts)
    pool = len(instruction_pool(config.seed, config.max_per_template))
    return (
        f"{summary_markdown(summary)}\n\n{summary['total']} prompts ({summary['distinct']} distinct), from a pool "
        f"of {pool}; {len(instructions.TEMPLATES)} templates."
    )


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between the summary markers replaced by ``block`` (markers kept)."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError("summary markers not found")
    return pattern.sub(lambda _: f"{START}\n{block}\n{END}", text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=InstructionConfig.seed)
    parser.add_argument("--n", type=int, default=InstructionConfig.n)
    parser.add_argument("--eval-fraction", type=float, default=InstructionConfig.eval_fraction)
    parser.add_argument("--max-per-template", type=int, default=InstructionConfig.max_per_template)
    parser.add_argument("--out", type=Path, help="write the prompts to this JSONL file")
    parser.add_argument(
        "--write-docs", action="store_true", help="refresh the make-up tables (default config only)"
    )
    args = parser.parse_args(argv)
    config = InstructionConfig(args.seed, args.n, args.eval_fraction, args.max_per_template)
    block = make_up(config)
    print(block)
    if args.out:
        lines = [json.dumps(p.to_record(), ensure_ascii=False) for p in instruction_prompts(config)]
        atomic_write_text(args.out, "\n".join(lines) + "\n")
        print(f"wrote {len(lines)} prompts to {args.out}")
    if args.write_docs:
        if config != InstructionConfig():
            parser.error("--write-docs documents the default set; drop the other options")
        for path in DOCS:
            atomic_write_text(path, replace_block(path.read_text(encoding="utf-8"), block))
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
