"""The accuracy/speed trade-off plot: CER against seconds per image, one labelled point per
method. matplotlib with the Agg backend, imported only when a plot is drawn."""

from __future__ import annotations

import io


def tradeoff_png(results: dict, title: str) -> bytes:
    """PNG bytes of the plot for one results object (byte-identical for identical input)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    methods = [k for k in results if k != "run"]
    xs = [results[m]["time_per_image_s"] for m in methods]
    ys = [results[m]["cer"] for m in methods]
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    ax.scatter(xs, ys, s=36, color="tab:blue", zorder=3)
    offsets = [(6, 6), (6, -13), (-6, 6), (-6, -13)]  # neighbours with equal scores stay legible
    for i, (m, x, y) in enumerate(zip(methods, xs, ys, strict=True)):
        dx, dy = offsets[i % len(offsets)]
        ax.annotate(
            m,
            (x, y),
            textcoords="offset points",
            xytext=(dx, dy),
            ha="left" if dx > 0 else "right",
            fontsize=9,
        )
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("seconds per image (lower is faster)")
    ax.set_ylabel("CER (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.15)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
