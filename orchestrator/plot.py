"""The accuracy/speed trade-off plot: CER against seconds per image, one labelled point per
method, the CER's 95% interval as an error bar. matplotlib with the Agg backend, imported only
when a plot is drawn.

Labels never overlap each other, a marker or an error bar: each label tries rings of offsets
around its point (near ones first) and takes the first whose box is clear. Methods with no
scored sample have no point; they are named in a note under the title.
"""

from __future__ import annotations

import io

from gpu_worker.contract.schema import method_names

_RINGS = (6, 14, 24, 36)
_OFFSETS = [
    offset
    for r in _RINGS
    for offset in ((r, r), (r, -r - 7), (-r, r), (-r, -r - 7), (r, -4), (-r, -4))
]


def _place_labels(fig, ax, methods: list[str], xs: list, ys: list, cis: list) -> list:
    """Annotate each point at the first offset whose text box overlaps no placed label, marker
    or error bar; returns the annotations."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    pad = 6  # pixels around a marker and an error bar
    obstacles = []
    for x, (lo, hi) in zip(xs, cis, strict=True):
        (px, p_lo), (_, p_hi) = ax.transData.transform([(x, lo), (x, hi)])
        obstacles.append(
            Bbox([[px - pad, min(p_lo, p_hi) - pad], [px + pad, max(p_lo, p_hi) + pad]])
        )
    placed, boxes = [], []
    for m, x, y in zip(methods, xs, ys, strict=True):
        for dx, dy in _OFFSETS:
            ann = ax.annotate(
                m,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx >= 0 else "right",
                fontsize=9,
                annotation_clip=False,
            )
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(b) for b in boxes + obstacles):
                break
            if (dx, dy) != _OFFSETS[-1]:
                ann.remove()
        boxes.append(box)
        placed.append(ann)
    return placed


def tradeoff_figure(results: dict, title: str):
    """The matplotlib Figure of the plot (labels placed), for `tradeoff_png` and tests."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = [k for k in method_names(results) if results[k].get("cer") is not None]
    failed = [k for k in method_names(results) if results[k].get("cer") is None]
    xs = [results[m]["time_per_image_s"] for m in methods]
    ys = [results[m]["cer"] for m in methods]
    cis = [results[m].get("cer_ci") or [results[m]["cer"]] * 2 for m in methods]
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if methods:
        below = [max(0.0, y - lo) for y, (lo, _) in zip(ys, cis, strict=True)]
        above = [max(0.0, hi - y) for y, (_, hi) in zip(ys, cis, strict=True)]
        ax.errorbar(
            xs,
            ys,
            yerr=[below, above],
            fmt="o",
            markersize=6,
            color="tab:blue",
            ecolor="tab:gray",
            elinewidth=1,
            capsize=3,
            zorder=3,
        )
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("seconds per image (lower is faster)")
    ax.set_ylabel("CER, 95% interval (lower is better)")
    note = f"\nfailed (no scored sample): {', '.join(failed)}" if failed else ""
    ax.set_title(title + note, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    fig.tight_layout()
    ax.set_xlim(ax.get_xlim())  # fixed limits: labels placed now stay where they were checked
    ax.set_ylim(ax.get_ylim())
    _place_labels(fig, ax, methods, xs, ys, cis)
    return fig


def tradeoff_png(results: dict, title: str) -> bytes:
    """PNG bytes of the plot for one results object (byte-identical for identical input)."""
    fig = tradeoff_figure(results, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
