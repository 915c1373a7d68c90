"""``retmask figures``: regenerate every figure of ``figures/`` (a thin layer over ``workflows.paper_figures``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "figures",
        help="regenerate every figure (organisms, published scores, masking, RetMask gain)",
        description="Run detection and masking experiments on the embedded organisms, read the published head "
        "scores from --shared, and write every figure (static images plus HTML for the interactive ones), the "
        "numbers behind them (DIR/data/*.csv), manifest.json and index.md into --out. Deterministic: the same "
        "inputs give the same files. Figures whose inputs are missing are skipped with a note.",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (e.g. figures/)")
    p.add_argument(
        "--shared",
        type=Path,
        default=None,
        metavar="PATH",
        help="published data directory holding head_scores/ and head_patterns/ (e.g. ../shared/data); "
        "without it only the organisms are used",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="PATH",
        help="RetMask gains: a JSON file, or a directory whose *.json files are searched (default: "
        "studies/organism_retmask, when it exists); a PATH given must exist, and a file given must hold the gains",
    )
    p.add_argument(
        "--organisms",
        nargs="*",
        default=["concentrated", "distributed"],
        metavar="NAME",
        help="organisms to run (default: concentrated distributed; `--organisms` alone: none)",
    )
    p.add_argument(
        "--real-study",
        nargs="*",
        default=None,
        type=Path,
        metavar="DIR",
        help="real-model study directories (`retmask study real-model`) to re-draw (default: the folders of "
        "studies/real_models/ that hold a heads.json; `--real-study` alone: none)",
    )
    p.add_argument(
        "--quick", action="store_true", help="a small NIAH grid (about a minute per organism on a CPU)"
    )
    p.add_argument(
        "--formats",
        nargs="+",
        default=["png", "svg"],
        metavar="FMT",
        help="static formats (default: png svg); `html` alone: HTML for every figure, no images",
    )
    p.add_argument(
        "--html",
        choices=["cdn", "inline", "none"],
        default="cdn",
        help="HTML of the interactive figures: cdn (small, loads plotly.js online), inline (offline, ~4 MB "
        "each) or none (default: cdn)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default, reproducible) or cuda")
    p.add_argument(
        "--reuse-data",
        action="store_true",
        help="take the numbers from DIR/data when they were made with the same settings (only re-draw)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the figures of a DIR that already holds them (manifest.json, index.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retmask_interp._cli.validate import check_writable, lock_outputs
    from retmask_interp.workflows.paper_figures import FigureConfig, regenerate_all

    check_writable(args.out / "manifest.json", "figures directory (--out)")
    lock_outputs(args, args.out, what="figures directory")
    settings = dict(
        organisms=tuple(args.organisms), device=args.device, formats=tuple(args.formats), html=args.html
    )
    config = FigureConfig.quick(**settings) if args.quick else FigureConfig(**settings)
    if args.shared is not None and not args.shared.exists():
        raise FileNotFoundError(f"--shared {args.shared} does not exist; give the published data directory")
    if args.results is not None and not args.results.exists():
        raise FileNotFoundError(f"--results {args.results} does not exist; give the RetMask results JSON")
    default = Path("studies/organism_retmask")
    results = args.results if args.results is not None else (default if default.is_dir() else None)
    if args.real_study is None:
        studies = sorted(p.parent for p in Path("studies/real_models").glob("*/heads.json"))
    else:
        studies = list(args.real_study)
        missing = [str(p) for p in studies if not (p / "heads.json").exists()]
        if missing:
            raise FileNotFoundError(
                f"--real-study {' '.join(missing)}: no heads.json there; give directories made by "
                "`retmask study real-model`"
            )
    manifest = regenerate_all(
        args.out,
        shared=args.shared,
        results=results,
        config=config,
        reuse_data=args.reuse_data,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        real_studies=studies,
    )
    for entry in manifest["figures"]:
        print(f"{entry['stem']:<40} {' '.join(entry['files'])}")
    for note in manifest["notes"]:
        print(f"note: {note}")
    print(f"{len(manifest['figures'])} figures in {args.out} (index: {args.out / 'index.md'})")
    return 0
