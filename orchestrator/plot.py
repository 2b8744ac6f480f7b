"""The accuracy/speed trade-off plot: CER against seconds per image, one labelled point per
method, the CER's 95% interval as an error bar. matplotlib with the Agg backend, imported only
when a plot is drawn.

Labels never overlap each other, a marker or an error bar: each label tries rings of offsets
around its point (near ones first) and takes the first whose box is clear. Methods with no
scored sample have no point; they are named in a note under the title.

Rates are finite but unbounded (a CER of 1e308 is valid): the CER axis is clipped at `CER_CAP`
and seconds per image at `SECONDS_CAP`; a point beyond is drawn at the edge and named in the note
(`off scale`), so no value can break the drawing.

`history_png` draws one playbook's runs over time: each method's CER with its interval per run.
"""

from __future__ import annotations

import io

from gpu_worker.contract.schema import method_names

CER_CAP = 2.0
SECONDS_CAP = 1e4
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
    methods = [k for k in method_names(results) if results[k].get("cer") is not None]
    failed = [k for k in method_names(results) if results[k].get("cer") is None]
    off = [m for m in methods if _off_scale(results[m])]
    xs = [_clip(results[m]["time_per_image_s"], SECONDS_CAP) for m in methods]
    ys = [_clip(results[m]["cer"], CER_CAP) for m in methods]
    cis = [[_clip(v, CER_CAP) for v in _ci(results[m])] for m in methods]
    fig, ax = _figure()
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
    if off:
        note += f"\noff scale (CER > {CER_CAP:g} or > {SECONDS_CAP:g} s), shown at the edge: "
        note += ", ".join(off)
    ax.set_title(title + note, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    fig.tight_layout()
    ax.set_xlim(ax.get_xlim())  # fixed limits: labels placed now stay where they were checked
    ax.set_ylim(ax.get_ylim())
    _place_labels(fig, ax, methods, xs, ys, cis)
    return fig


def _clip(value: float | None, cap: float) -> float | None:
    return None if value is None else max(0.0, min(float(value), cap))


def _ci(body: dict) -> list[float]:
    return body.get("cer_ci") or [body["cer"]] * 2


def _off_scale(body: dict) -> bool:
    seconds = body.get("time_per_image_s")
    return max(_ci(body)[1], body["cer"]) > CER_CAP or (seconds or 0) > SECONDS_CAP


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def tradeoff_png(results: dict, title: str) -> bytes:
    """PNG bytes of the plot for one results object (byte-identical for identical input)."""
    return _png(tradeoff_figure(results, title))


def history_figure(runs: list[tuple[str, float, dict]], title: str, pinned: set[str]):
    """CER with its 95% interval of every method, per run, oldest run first (`runs`: run id,
    start time, results). Runs are evenly spaced and labelled by date and n; pinned runs are
    shaded."""
    import time

    fig, ax = _figure()
    methods: list[str] = []
    for _, _, res in runs:
        methods += [m for m in method_names(res) if m not in methods]
    width = 0.6 / max(1, len(methods))
    off: list[str] = []
    for j, m in enumerate(methods):
        points = [
            (i + (j - (len(methods) - 1) / 2) * width, res[m])
            for i, (_, _, res) in enumerate(runs)
            if m in res and res[m].get("cer") is not None
        ]
        if not points:
            continue
        off += [m for _, body in points if _off_scale(body) and m not in off]
        ys = [_clip(b["cer"], CER_CAP) for _, b in points]
        cis = [[_clip(v, CER_CAP) for v in _ci(b)] for _, b in points]
        ax.errorbar(
            [x for x, _ in points],
            ys,
            yerr=[
                [max(0.0, y - lo) for y, (lo, _) in zip(ys, cis, strict=True)],
                [max(0.0, hi - y) for y, (_, hi) in zip(ys, cis, strict=True)],
            ],
            fmt="o-",
            markersize=5,
            capsize=3,
            label=m,
        )
    for i, (run_id, _, _) in enumerate(runs):
        if run_id in pinned:
            ax.axvspan(i - 0.4, i + 0.4, color="tab:green", alpha=0.12, zorder=0)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(
        [
            (time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if 0 < t < 1e11 else "?")
            + f"\nn={max((b['n'] for k, b in res.items() if k != 'run'), default=0)}"
            for _, t, res in runs
        ],
        fontsize=8,
    )
    ax.set_xlim(-0.6, len(runs) - 0.4)
    ax.set_ylabel("CER, 95% interval (lower is better)")
    note = f"\noff scale (CER > {CER_CAP:g}), shown at the edge: {', '.join(off)}" if off else ""
    ax.set_title(f"{title} (shaded: published run){note}", fontsize=10)
    ax.grid(True, alpha=0.3)
    if methods:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def history_png(runs: list[tuple[str, float, dict]], title: str, pinned: set[str]) -> bytes:
    """PNG bytes of `history_figure` (byte-identical for identical input)."""
    return _png(history_figure(runs, title, pinned))
