"""The ``retmask`` command: a thin layer over the Python API.

Each group of subcommands lives in ``retmask_interp/_cli/<group>.py`` with a ``register(subparsers)`` function
that adds its parsers and sets ``func`` (called with the parsed arguments, returning an exit code). Heavy imports
happen inside the ``func``s, so ``retmask --help`` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys

__all__ = ["main", "build_parser"]

# order = order in --help
_GROUPS = ["detect", "analysis", "training", "figures", "study"]


def build_parser() -> argparse.ArgumentParser:
    from retmask_interp import __version__

    parser = argparse.ArgumentParser(
        prog="retmask",
        description="Find retrieval heads (Wu et al.), mask them, and train with RetMask.",
    )
    parser.add_argument("--version", action="version", version=f"retmask-interp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _GROUPS:
        importlib.import_module(f"retmask_interp._cli.{group}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # kaleido's browser logs every start and stop at INFO
        for noisy in ("kaleido", "choreographer", "logistro", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from retmask_interp._cli.detect import resolve_model_option

        resolve_model_option(args, args.command)  # --model, or the deprecated positional MODEL
        with contextlib.ExitStack() as held:  # run locks taken by the command (_cli.validate.lock_outputs)
            args.held = held
            return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        # bad input: one clear line, no traceback (run with -v for one)
        if args.verbose:
            raise
        print(f"retmask {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
