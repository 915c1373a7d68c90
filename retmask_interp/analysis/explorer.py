"""The head explorer for Jupyter: ``explore(model, heads, grid)``.

A clickable heatmap of the head scores (``head_grid``, a small anywidget); clicking a head selects it (shift-click, or
"add to selection" ticked, adds it to the heads already selected; clicking a selected head again removes it). For the selection the explorer shows, on the chosen NIAH sample, the heads' attention around the
needle (circuitsvis, ``measure.attention.attention_view``) and the model's answer with the selected heads masked
next to the unmasked answer and the needle's true answer. Needs the ``notebooks`` extra (ipywidgets, anywidget,
circuitsvis).

``HeadExplorer`` holds the state and the widgets; ``select`` / ``choose_sample`` are what a click or the sample menu
call, so the explorer can be driven (and tested) from Python as well as in the browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from retmask_interp.core.models import as_model
from retmask_interp.core.notation import Head, head_key
from retmask_interp.heads.scores import HeadScores
from retmask_interp.interventions.masking import masked

__all__ = ["HeadExplorer", "explore", "head_grid", "sample_label"]


def sample_label(sample: Any, index: int) -> str:
    """``"#3: needle 0, 1000 tokens, depth 50%"`` (fields a NIAH sample has; others are left out)."""
    parts = []
    if getattr(sample, "needle_index", None) is not None:
        parts.append(f"needle {sample.needle_index}")
    parts.append(f"{len(sample.input_ids)} tokens")
    if getattr(sample, "depth", None) is not None:
        parts.append(f"depth {float(sample.depth):g}%")
    return f"#{index}: " + ", ".join(parts)


_GRID_ESM = """
const NS = "http://www.w3.org/2000/svg";
function node(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function render({ model, el }) {
  const draw = () => {
    el.innerHTML = "";
    const nl = model.get("num_layers"), nh = model.get("num_heads");
    const colors = model.get("colors"), labels = model.get("labels"), inks = model.get("inks");
    const tips = model.get("tips"), cw = model.get("cell_width"), ch = model.get("cell_height");
    const selected = new Set(model.get("selected"));
    const left = 46, top = 6, bottom = 38;
    const svg = node("svg", { width: left + nh * cw + 8, height: top + nl * ch + bottom, class: "head-grid" });
    for (let l = 0; l < nl; l++) {
      const y = top + (nl - 1 - l) * ch;
      if (nl <= 40 || l % 5 === 0)
        node("text", { x: left - 6, y: y + ch / 2 + 4, "text-anchor": "end", "font-size": 11 }, svg).textContent = l;
      for (let h = 0; h < nh; h++) {
        const i = l * nh + h, key = l + "-" + h, x = left + h * cw;
        const on = selected.has(key);
        const r = node("rect", { x: x, y: y, width: cw - 1, height: ch - 1, fill: colors[i],
          stroke: on ? "#ff2d2d" : "none", "stroke-width": on ? 3 : 0, class: "head-cell", "data-head": key,
          style: "cursor:pointer" }, svg);
        node("title", {}, r).textContent = tips[i];
        if (labels[i]) {
          const t = node("text", { x: x + cw / 2, y: y + ch / 2 + 4, "text-anchor": "middle", "font-size": 10,
            fill: inks[i], "pointer-events": "none" }, svg);
          t.textContent = labels[i];
        }
        r.addEventListener("click", (e) => {
          model.set("clicked", { head: key, add: e.shiftKey, n: Date.now() });
          model.save_changes();
        });
      }
    }
    for (let h = 0; h < nh; h++)
      if (nh <= 40 || h % 5 === 0)
        node("text", { x: left + h * cw + cw / 2, y: top + nl * ch + 14, "text-anchor": "middle",
          "font-size": 11 }, svg).textContent = h;
    node("text", { x: left + (nh * cw) / 2, y: top + nl * ch + 32, "text-anchor": "middle", "font-size": 12 },
      svg).textContent = "head";
    node("text", { x: 12, y: top + (nl * ch) / 2, "text-anchor": "middle", "font-size": 12,
      transform: "rotate(-90 12 " + (top + (nl * ch) / 2) + ")" }, svg).textContent = "layer";
    el.appendChild(svg);
  };
  draw();
  model.on("change:selected", draw);
  model.on("change:colors", draw);
}
export default { render };
"""

_GRID_CLASS: list[type] = []


def _grid_class() -> type:
    """The ``HeadGrid`` anywidget class (built on first use: anywidget is an optional dependency)."""
    if not _GRID_CLASS:
        import anywidget
        import traitlets as t

        class HeadGrid(anywidget.AnyWidget):
            """A clickable layer x head grid (an SVG heatmap of a few kilobytes of script, so that it starts at
            once; plotly's FigureWidget ships plotly.js to the browser and may miss anywidget's start-up timeout on a
            slow machine). ``clicked`` is set on every click; ``selected`` outlines heads."""

            _esm = _GRID_ESM
            num_layers = t.Int(0).tag(sync=True)
            num_heads = t.Int(0).tag(sync=True)
            colors = t.List(t.Unicode()).tag(sync=True)
            labels = t.List(t.Unicode()).tag(sync=True)
            inks = t.List(t.Unicode()).tag(sync=True)
            tips = t.List(t.Unicode()).tag(sync=True)
            selected = t.List(t.Unicode()).tag(sync=True)
            clicked = t.Dict(allow_none=True, default_value=None).tag(sync=True)
            cell_width = t.Int(34).tag(sync=True)
            cell_height = t.Int(18).tag(sync=True)

        _GRID_CLASS.append(HeadGrid)
    return _GRID_CLASS[0]


def head_grid(heads: HeadScores, *, annotate_top: int = 10):
    """The explorer's clickable heatmap of ``heads``: Viridis colours from 0 to the best score (as
    ``HeadScores.heatmap``), the ``annotate_top`` best heads labelled by rank in a colour legible on their cell
    (``heads.plots.top_annotations``), a tooltip ``layer-head: score`` on every cell."""
    from plotly.colors import sample_colorscale

    from retmask_interp.heads.plots import HEAT_SCALE, top_annotations

    m = heads.matrix().clip(min=0.0)
    top = float(m.max()) or 1.0
    flat = [float(v) for v in m.ravel()]
    n = len(flat)
    labels, inks = [""] * n, ["white"] * n
    for ann in top_annotations(m, annotate_top, top):
        i = int(ann["y"]) * m.shape[1] + int(ann["x"])
        labels[i], inks[i] = ann["text"], ann["font"]["color"]
    return _grid_class()(
        num_layers=m.shape[0],
        num_heads=m.shape[1],
        colors=sample_colorscale(HEAT_SCALE, [v / top for v in flat]),
        labels=labels,
        inks=inks,
        tips=[f"{head_key(i // m.shape[1], i % m.shape[1])}: {v:.3f}" for i, v in enumerate(flat)],
        cell_height=18 if m.shape[0] <= 40 else 10,
        cell_width=34 if m.shape[1] <= 24 else 16,
    )


class HeadExplorer:
    """State and widgets of the explorer (see the module docstring); ``.widget`` is what a notebook displays."""

    def __init__(
        self,
        model,
        heads: HeadScores,
        grid: Sequence[Any],
        *,
        sample: int = 0,
        max_new_tokens: int = 24,
        stop: str = "newline",
        select: Sequence[Head | str] = (),
    ):
        import ipywidgets as W

        if not len(grid):
            raise ValueError("the grid is empty: give NIAH samples (rmi.niah_grid(model, ...))")
        self.rm = as_model(model)
        self.heads = heads
        self.grid = list(grid)
        self.max_new_tokens = max_new_tokens
        self.stop = stop
        self.selected: list[Head] = []
        self.sample = int(sample)
        self._unmasked: dict[int, str] = {}
        self.grid_view = head_grid(heads)
        self.grid_view.observe(self._on_click, names="clicked")
        title = W.HTML(f"<b>{escape(heads.model or self.rm.name)}</b>: click a head (shift-click adds it)")
        self.samples = W.Dropdown(
            options=[(sample_label(s, i), i) for i, s in enumerate(self.grid)],
            value=self.sample,
            description="sample",
            layout=W.Layout(width="420px"),
        )
        self.samples.observe(lambda change: self.choose_sample(change["new"]), names="value")
        self.add = W.Checkbox(value=False, description="add to selection", indent=False)
        self.clear = W.Button(description="clear selection")
        self.clear.on_click(lambda _: self._set([]))
        self.status = W.HTML(value="<b>selected:</b> none (click a head in the heatmap)")
        self.answers = W.HTML()
        self.attention = W.HTML()
        controls = W.HBox([self.samples, self.add, self.clear])
        self.widget = W.VBox([title, self.grid_view, controls, self.status, self.answers, self.attention])
        self.widget.add_class("retmask-explorer")
        if select:
            self._set(self.rm.check_heads(select))
        else:
            self._render()

    # -- what clicks and menus call ------------------------------------------------------------------
    def select(self, layer: int, head: int, *, add: bool = False) -> None:
        """Select head ``layer-head`` (with ``add``, add it to the selection; clicking it again removes it)."""
        (h,) = self.rm.check_heads([(layer, head)])
        if not add:
            self._set([h])
        elif h in self.selected:
            self._set([x for x in self.selected if x != h])
        else:
            self._set([*self.selected, h])

    def choose_sample(self, index: int) -> None:
        self.sample = int(index)
        if self.samples.value != self.sample:
            self.samples.value = self.sample  # calls back here once more, with the same index
            return
        self._render()

    def _on_click(self, change) -> None:
        """A click in the grid (``HeadGrid.clicked``: ``{"head": "layer-head", "add": shift held}``)."""
        click = change["new"] or {}
        if not click.get("head"):
            return
        try:
            layer, head = (int(x) for x in str(click["head"]).split("-"))
            self.select(layer, head, add=bool(click.get("add")) or bool(self.add.value))
        except Exception as err:  # a widget callback's error would only reach the browser's log console
            self.status.value = f"<b>error:</b> <code>{escape(repr(err))}</code>"
            raise

    def _set(self, heads: list[Head]) -> None:
        self.selected = heads
        self.grid_view.selected = [head_key(*h) for h in heads]
        self._render()

    # -- views -----------------------------------------------------------------------------------------
    def unmasked_answer(self) -> str:
        if self.sample not in self._unmasked:
            self._unmasked[self.sample] = str(
                self.rm.generate(self.grid[self.sample], self.max_new_tokens, stop=self.stop)
            )
        return self._unmasked[self.sample]

    def masked_answer(self) -> str:
        with masked(self.rm, self.selected) as m:
            return str(m.generate(self.grid[self.sample], self.max_new_tokens, stop=self.stop))

    def attention_html(self) -> str:
        """The selected heads' attention around the needle on the sample: circuitsvis' self-contained page in an
        iframe (it works offline, without circuitsvis' CDN), or an empty string without a selection."""
        from retmask_interp.measure.attention import attention_view

        sample = self.grid[self.sample]
        if not self.selected or not hasattr(sample, "answer_span"):
            return ""
        page = attention_view(self.rm, sample, self.selected).local_src
        return (
            f"<iframe class='attention-view' srcdoc=\"{escape(page, quote=True)}\" "
            "style='width:100%;height:620px;border:0'></iframe>"
        )

    def _render(self) -> None:
        sample = self.grid[self.sample]
        names = ", ".join(head_key(*h) for h in self.selected) or "none (click a head in the heatmap)"
        scores = self.heads.matrix()
        detail = ", ".join(f"{head_key(*h)}: score {scores[h]:.3f}" for h in self.selected)
        self.status.value = f"<b>selected:</b> <span class='selected-heads'>{escape(names)}</span>" + (
            f" ({escape(detail)})" if detail else ""
        )
        truth = (getattr(sample, "needle", None) or {}).get("real_needle", "")
        rows = [("needle's answer", truth), ("unmasked", self.unmasked_answer())]
        if self.selected:
            rows.append((f"{names} masked", self.masked_answer()))
        self.answers.value = "<table class='answers'>" + "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>"
            for k, v in rows
        ) + "</table>"  # fmt: skip
        self.attention.value = self.attention_html()


def explore(model, heads: HeadScores, grid: Sequence[Any], **kwargs) -> Any:
    """The head explorer widget for a notebook (module docstring): ``rmi.explore(model, heads, grid)``.

    ``sample``: the first sample shown; ``max_new_tokens`` / ``stop``: how answers are generated (``"newline"``,
    Wu et al.'s NIAH decoding, by default); ``select``: heads selected at the start. Returns the displayable widget;
    its ``.explorer`` is the ``HeadExplorer`` behind it."""
    ex = HeadExplorer(model, heads, grid, **kwargs)
    ex.widget.explorer = ex  # the state, for code that drives the widget
    return ex.widget
