"""The trade-off plot: CER error bars, labels that overlap nothing, failed methods named."""

import itertools

from orchestrator.plot import tradeoff_figure, tradeoff_png


def crowded() -> dict:
    points = [("baseline", 0.42, 0.05), ("beam_3", 0.36, 0.10), ("beam_5", 0.359, 0.101)]
    points += [(f"ens_{v}", 0.30, 0.20) for v in ("mbr", "majority", "longest", "logits")]
    res = {
        m: {"cer": c, "time_per_image_s": t, "cer_ci": [c - 0.03, c + 0.02]} for m, c, t in points
    }
    res["broken"] = {"cer": None, "time_per_image_s": None, "cer_ci": None}
    res["run"] = {}
    return res


def test_labels_overlap_no_label_marker_or_error_bar_and_failed_methods_are_named():
    res = crowded()
    fig = tradeoff_figure(res, "quickwin")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert set(labels) == {m for m in res if m not in ("run", "broken")}
    for (a, box_a), (b, box_b) in itertools.combinations(labels.items(), 2):
        assert not box_a.overlaps(box_b), (a, b)
    for name, box in labels.items():
        for m, body in res.items():
            if m in ("run", "broken"):
                continue
            x = ax.transData.transform((body["time_per_image_s"], body["cer"]))[0]
            (_, lo), (_, hi) = ax.transData.transform(
                [(body["time_per_image_s"], v) for v in body["cer_ci"]]
            )
            crosses_bar = box.x0 <= x <= box.x1 and box.y0 <= hi and box.y1 >= lo
            assert not crosses_bar, (name, m)
    [bars] = ax.containers  # one errorbar container: the 95% intervals
    segments = bars.lines[2][0].get_segments()
    assert len(segments) == 7
    assert sorted(round(s[1][1] - s[0][1], 3) for s in segments) == [0.05] * 7
    assert "failed (no scored sample): broken" in ax.get_title()
    assert tradeoff_png(res, "quickwin") == tradeoff_png(res, "quickwin")
