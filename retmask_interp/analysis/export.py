"""The one figure writer: plotly figures to HTML (offline) and static images through kaleido."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from retmask_interp.core.io import atomic_write_bytes, atomic_write_text, refuse_overwrite

log = logging.getLogger(__name__)

FIGURE_FORMATS = ("html", "png", "svg", "pdf", "jpeg", "jpg", "webp")
NOTEBOOK_RENDERER = "plotly_mimetype+notebook"


def offline_notebook_figures(renderer: str = NOTEBOOK_RENDERER) -> None:
    """Make plotly figures shown in a notebook render everywhere, without network.

    Each figure carries two outputs: the plotly mimetype (JupyterLab and VS Code draw it) and HTML whose
    plotly.js is embedded once per notebook (plotly's offline ``notebook`` renderer), which an HTML export
    (``jupyter nbconvert --to html``) or a repository preview shows. Call it in a notebook's first cell.
    """
    import plotly.io as pio

    pio.renderers.default = renderer


def check_figure_formats(formats: Sequence[str]) -> list[str]:
    """The normalised formats (``".PNG"`` -> ``"png"``), or ``ValueError`` naming the unknown ones."""
    out = [fmt.lower().lstrip(".") for fmt in formats]
    unknown = sorted(set(out) - set(FIGURE_FORMATS))
    if unknown or not out:
        raise ValueError(
            f"unknown figure formats {unknown or list(formats)}; use html, png, svg, pdf, jpeg or webp"
        )
    return out


@contextlib.contextmanager
def static_export_session():
    """Keep one headless browser open for several static exports (kaleido's sync server): after the first
    image each takes a fraction of a second instead of seconds. Does nothing when a server already runs (it is
    left running) or kaleido is missing; the server is stopped on leaving."""
    try:
        import kaleido
        from kaleido._sync_server import GlobalKaleidoServer

        running = GlobalKaleidoServer().is_running()
    except Exception:  # kaleido absent or its internals moved: export image by image
        yield
        return
    if running:
        yield
        return
    kaleido.start_sync_server(silence_warnings=True)
    try:
        yield
    finally:
        kaleido.stop_sync_server(silence_warnings=True)


def save_figure(
    fig,
    path_stem: str | Path,
    formats: Sequence[str] = ("html", "png", "svg", "pdf"),
    *,
    overwrite: bool = False,
    scale: float = 2.0,
    html: str = "inline",
) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.<fmt>`` for each format, atomically; returns the files written.

    HTML embeds plotly.js (``html="inline"``: works offline) or loads it from its CDN (``html="cdn"``: a small
    file), with a fixed element id. Traces get ids derived from the file name, and SVG files the same, so the same
    figure gives byte-identical files. Static formats (png, svg, pdf, jpeg, webp) go through kaleido, which needs
    Chrome/Chromium; when it is missing a warning names the fix and the other formats are still written.
    Existing files are refused unless ``overwrite``.
    """
    import plotly.graph_objects as go

    if html not in ("inline", "cdn"):
        raise ValueError(f"html must be 'inline' or 'cdn', got {html!r}")
    stem = Path(path_stem)
    paths = {fmt: stem.with_name(f"{stem.name}.{fmt}") for fmt in check_figure_formats(formats)}
    for path in paths.values():
        refuse_overwrite(path, overwrite, "figure")
    fig = go.Figure(fig)  # a copy with fixed trace ids (plotly.js draws random ones into its output)
    tag = hashlib.sha1(stem.name.encode()).hexdigest()[:6]
    for i, trace in enumerate(fig.data):
        trace.uid = trace.uid or f"{tag}-{i}"
    written = []
    for fmt, path in paths.items():
        if fmt == "html":
            div_id = "retmask-" + (re.sub(r"[^A-Za-z0-9_-]", "-", stem.name) or "figure")
            js = True if html == "inline" else "cdn"
            atomic_write_text(path, fig.to_html(include_plotlyjs=js, full_html=True, div_id=div_id))
        else:
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="The kopts argument is ignored")
                    data = fig.to_image(format="jpeg" if fmt == "jpg" else fmt, scale=scale)
            except Exception as err:  # kaleido raises several types when no browser is found
                log.warning(
                    "could not write %s (%s: %s). Static export needs Chrome/Chromium for kaleido: "
                    "`apt-get install chromium` (Debian/Ubuntu) or `plotly_get_chrome`; HTML is still written.",
                    path,
                    type(err).__name__,
                    err,
                )
                continue
            if fmt == "svg":  # plotly.js names the figure's element ids with a random uid: fix it
                text = data.decode("utf-8")
                uid = re.search(r'id="defs-([0-9a-z]+)"', text)
                if uid:
                    text = text.replace(uid.group(1), (tag * 4)[: len(uid.group(1))])
                data = text.encode("utf-8")
            atomic_write_bytes(path, data)
        written.append(path)
    return written
