import matplotlib

matplotlib.use("Agg")

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402
from PIL import Image  # noqa: E402

from fkdlib.errors import ConfigError  # noqa: E402
from fkdlib.report.figures import (  # noqa: E402
    LABEL_MARKERS,
    PALETTE,
    SIMILARITY_DECADES,
    STYLE,
    label_styles,
    method_color,
    plot_embedding_2d,
    plot_roc,
    plot_similarity_distributions,
    projection_grid,
    readable_y_scale,
    roc_figure,
    save_figure,
    similarity_grid,
    style_context,
    use_style,
)




def test_save_figure_writes_valid_png_pdf_svg(tmp_path):
    with style_context():
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, 1])
        paths = save_figure(fig, tmp_path / "out" / "curve")
    assert [p.name for p in paths] == ["curve.png", "curve.pdf", "curve.svg"]
    assert all(p.exists() for p in paths)
    with Image.open(paths[0]) as image:
        assert image.format == "PNG"
        assert min(image.info["dpi"]) >= 199.5
    assert paths[1].read_bytes().startswith(b"%PDF-")
    assert paths[1].read_bytes().rstrip().endswith(b"%%EOF")
    svg = paths[2].read_text()
    assert svg.startswith("<?xml") and "<svg" in svg and svg.rstrip().endswith("</svg>")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "curve.pdf", "curve.png", "curve.svg"]


# A figure with what makes saved files differ between runs when it is not handled: text, a
# legend, an image, a hatch and clipped artists (SVG ids), and fonts (PDF subsets).
_BUSY_FIGURE = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
fig, (a, b) = plt.subplots(1, 2, figsize=(4, 2))
a.plot([0, 1, 2], [1, 0, 1], label="θ_y")
a.bar([0, 1], [1, 2], hatch="//", label="bars")
a.legend()
a.set_title("similarity ≥ 0.5")
b.imshow(np.arange(12.0).reshape(3, 4))
b.text(0.5, 0.5, "clipped", clip_on=True)
"""


def _save_busy(stem):
    namespace = {}
    exec(_BUSY_FIGURE, namespace)
    return [p.read_bytes() for p in save_figure(namespace["fig"], stem)]


def test_saved_files_are_byte_identical(tmp_path):
    with style_context():
        first = _save_busy(tmp_path / "a")
        second = _save_busy(tmp_path / "b")
    assert first == second
    png, pdf, svg = first
    assert b"CreationDate" not in pdf and b"ModDate" not in pdf
    assert b"<dc:date>" not in svg
    # outside the fkdlib style too (matplotlib's defaults, whatever an earlier test applied):
    # save_figure salts the SVG ids itself
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        assert matplotlib.rcParams["svg.hashsalt"] is None
        assert _save_busy(tmp_path / "c") == _save_busy(tmp_path / "d")


def test_saved_files_are_the_same_in_another_process(tmp_path):
    with style_context():
        here = _save_busy(tmp_path / "here")
    script = ("from fkdlib.report.figures import save_figure, style_context\n"
              "with style_context():\n    namespace = {}\n"
              f"    exec({_BUSY_FIGURE!r}, namespace)\n"
              f"    save_figure(namespace['fig'], {str(tmp_path / 'there')!r})\n")
    environment = {**os.environ, "PYTHONHASHSEED": "12345",
                   "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, timeout=300)
    there = [(tmp_path / f"there.{fmt}").read_bytes() for fmt in ("png", "pdf", "svg")]
    assert here == there


def test_the_style_salts_svg_ids():
    assert STYLE["svg.hashsalt"] == "fkdlib"
    with style_context():
        assert matplotlib.rcParams["svg.hashsalt"] == "fkdlib"


def test_low_dpi_is_refused(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ConfigError, match="200 dpi"):
        save_figure(fig, tmp_path / "x", dpi=100)


def test_style_context_restores_rcparams_and_use_style_sets_them():
    before = matplotlib.rcParams["axes.spines.top"]
    with style_context():
        assert matplotlib.rcParams["axes.spines.top"] is False
        assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == list(PALETTE)
    assert matplotlib.rcParams["axes.spines.top"] == before
    with matplotlib.rc_context():
        use_style()
        assert matplotlib.rcParams["axes.grid"] is True
        assert matplotlib.rcParams["pdf.fonttype"] == STYLE["pdf.fonttype"]


def test_method_colors_are_fixed_stable_and_from_the_palette():
    assert method_color("ArcFace") == method_color("arcface") == "#0072B2"
    assert method_color("Norm-Softmax") == method_color("norm_softmax")
    assert method_color("teacher") == "#000000"
    arcface_notebook = ["softmax", "norm_softmax", "sphereface", "cosface", "arcface", "combined"]
    assert len({method_color(m) for m in arcface_notebook}) == len(arcface_notebook)
    # unknown names: a palette colour chosen by SHA-256, identical on every call
    assert method_color("my new method") in PALETTE
    assert method_color("my new method") == method_color("My-New method")


def test_similarity_distributions_plot_the_input_densities_and_means():
    rng = np.random.default_rng(0)
    data = {
        "ArcFace": (rng.normal(0.6, 0.1, 300), torch.tensor(rng.normal(0.0, 0.1, 500))),
        "Softmax": (rng.normal(0.5, 0.15, 200), rng.normal(0.1, 0.15, 400)),
    }
    ax = plot_similarity_distributions(data, bins=20)
    everything = np.concatenate([np.concatenate([np.asarray(a) for a in p]) for p in data.values()])
    edges = np.linspace(everything.min(), everything.max(), 21)
    stairs = {patch.get_label(): patch for patch in ax.patches if isinstance(patch, StepPatch)}
    assert set(stairs) == {"ArcFace (pos)", "ArcFace (neg)", "Softmax (pos)", "Softmax (neg)"}
    for method, (positive, negative) in data.items():
        for kind, values in (("pos", np.asarray(positive)), ("neg", np.asarray(negative))):
            plotted = stairs[f"{method} ({kind})"].get_data()
            expected, _ = np.histogram(values, bins=edges, density=True)
            np.testing.assert_allclose(plotted.values, expected)
            np.testing.assert_allclose(plotted.edges, edges)
            mean_line = [line for line in ax.lines
                         if line.get_label() == f"_{method} ({kind}) mean"]
            assert len(mean_line) == 1
            np.testing.assert_allclose(mean_line[0].get_xdata(), [values.mean()] * 2)
            assert stairs[f"{method} ({kind})"].get_edgecolor() == \
                matplotlib.colors.to_rgba(method_color(method))


def test_similarity_distributions_refuse_bad_input():
    with pytest.raises(ValueError, match="no methods"):
        plot_similarity_distributions({})
    with pytest.raises(ValueError, match="pair"):
        plot_similarity_distributions({"a": np.zeros(3)})
    with pytest.raises(ValueError, match="NaN"):
        plot_similarity_distributions({"a": (np.array([0.1, np.nan]), np.zeros(3))})


def test_roc_plots_the_input_on_a_log_far_axis():
    fpr = np.array([0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0])
    tpr = np.array([0.2, 0.5, 0.7, 0.85, 0.95, 1.0])
    ax = plot_roc({"ArcFace": (fpr, tpr), "Softmax": (fpr, tpr * 0.9)})
    assert ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.lines}
    np.testing.assert_allclose(lines["ArcFace"].get_xdata(), fpr[1:])
    np.testing.assert_allclose(lines["ArcFace"].get_ydata(), tpr[1:])
    np.testing.assert_allclose(lines["Softmax"].get_ydata(), 0.9 * tpr[1:])
    assert ax.get_xlim() == pytest.approx((1e-4, 1.0))
    with pytest.raises(ValueError, match="lengths differ"):
        plot_roc({"a": (fpr, tpr[:-1])})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_roc({"a": (fpr, tpr * 2)})


def test_embedding_2d_scatters_each_label():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(40, 2))
    labels = np.repeat(["b", "a", "c", "d"], 10)
    ax = plot_embedding_2d(xy, labels, title="toy")
    collections = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [c.get_label() for c in collections] == ["a", "b", "c", "d"]
    for collection in collections:
        np.testing.assert_allclose(collection.get_offsets(), xy[labels == collection.get_label()])
    assert ax.get_title() == "toy"
    many = plot_embedding_2d(rng.normal(size=(60, 2)), np.arange(60) % 30)
    looks = [(tuple(c.get_facecolor()[0][:3]), c.get_paths()[0].vertices.tobytes())
             for c in many.collections]
    assert len(set(looks)) == 30  # every label its own colour and marker pair
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot_embedding_2d(np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match="labels must have shape"):
        plot_embedding_2d(np.zeros((5, 2)), np.zeros(4))


def test_label_styles_give_eight_labels_eight_colours_and_eight_markers():
    eight = label_styles(8)
    assert [color for color, _ in eight] == list(PALETTE[:8])  # Okabe-Ito's eight
    assert len({color for color, _ in eight}) == 8
    assert [marker for _, marker in eight] == list(LABEL_MARKERS)
    twenty = label_styles(20)
    assert len(set(twenty)) == 20 and twenty[:8] == eight
    assert {color for color, _ in twenty} == set(PALETTE[:8])
    assert twenty[8] == (PALETTE[0], LABEL_MARKERS[1])  # the colour again, another marker
    assert len(set(label_styles(64))) == 64
    many = label_styles(70)
    assert len({color for color, _ in many}) == 70 and {m for _, m in many} == {"o"}


def test_embedding_2d_draws_eight_labels_in_eight_colours_and_markers():
    xy = np.random.default_rng(6).normal(size=(80, 2))
    ax = plot_embedding_2d(xy, np.arange(80) % 8)
    colors = [matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in ax.collections]
    assert colors == [c.lower() for c in PALETTE[:8]] and len(set(colors)) == 8
    shapes = {c.get_paths()[0].vertices.tobytes() for c in ax.collections}
    assert len(shapes) == 8
    assert len(ax.get_legend().get_texts()) == 8


def _shown_y_labels(ax) -> list[str]:
    """The y tick labels a reader sees: drawn, inside the axis limits, not empty."""
    ax.figure.canvas.draw()
    low, high = ax.get_ylim()
    return [t.get_text() for t in ax.get_yticklabels()
            if low <= t.get_position()[1] <= high and t.get_text()]


def test_readable_y_scale_linear_for_a_short_range():
    fig, ax = plt.subplots()
    values = np.array([39.0, 33.0, 29.5, 27.5, 22.0])
    ax.plot(values)
    assert readable_y_scale(ax, values, "training loss") == "linear"
    assert ax.get_yscale() == "linear" and ax.get_ylabel() == "training loss"
    assert len(_shown_y_labels(ax)) >= 4


def test_readable_y_scale_log_with_plain_labels_at_1_2_5():
    fig, ax = plt.subplots()
    values = np.array([50.0, 20.0, 8.0, 2.5, 0.9])
    ax.plot(values)
    assert readable_y_scale(ax, values, "training loss") == "log"
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "training loss, log scale"
    assert _shown_y_labels(ax) == ["1", "2", "5", "10", "20", "50"]
    # a range of less than a decade, or a value <= 0, stays linear
    assert readable_y_scale(ax, [3.0, 29.0], "x") == "linear"
    assert readable_y_scale(ax, [0.0, 100.0], "x") == "linear"


# ----------------------------------------------------------------------------- whole figures


def test_projection_grid_lays_out_the_panels_in_order():
    rng = np.random.default_rng(2)
    labels = np.repeat([3, 1, 2], 5)
    panels = {f"panel {k}": (rng.normal(size=(15, 2)), labels) for k in range(5)}
    fig = projection_grid(panels, ncols=2)
    assert len(fig.axes) == 6 and not fig.axes[5].axison
    for ax, (title, (xy, labels_)) in zip(fig.axes, panels.items()):
        assert ax.get_title() == title
        assert ax.get_legend() is None and list(ax.get_xticks()) == []
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert [c.get_label() for c in scatters] == ["1", "2", "3"]
        for scatter in scatters:
            np.testing.assert_allclose(scatter.get_offsets(), xy[labels_ == int(scatter.get_label())])
        # the same label has the same colour in every panel
        assert [tuple(c.get_facecolor()[0]) for c in scatters] == \
            [tuple(c.get_facecolor()[0]) for c in fig.axes[0].collections]
    assert fig.legends == []
    width, height = fig.get_size_inches()
    assert (width, height) == pytest.approx((2 * 3.4, 3 * 3.6))


def test_projection_grid_legend_and_ticks_options():
    xy, labels = np.random.default_rng(3).normal(size=(12, 2)), np.repeat(["a", "b", "c"], 4)
    fig = projection_grid({"one": (xy, labels), "two": (xy, labels)}, legend=True, ticks=True)
    assert len(fig.axes) == 2 and len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b", "c"]
    assert fig.legends[0].get_title().get_text() == ""
    titled = projection_grid({"one": (xy, labels)}, legend="identity")
    assert titled.legends[0].get_title().get_text() == "identity"
    assert len(fig.axes[0].get_xticks()) > 0
    many = projection_grid({"x": (np.random.default_rng(4).normal(size=(26, 2)), np.arange(26) % 13)},
                           legend=True)
    assert many.legends == []  # more than MAX_LEGEND_LABELS labels: colours only
    with pytest.raises(ValueError, match="no panels"):
        projection_grid({})
    with pytest.raises(ValueError, match="pair"):
        projection_grid({"x": xy})


def test_similarity_grid_one_panel_per_title_and_one_legend():
    rng = np.random.default_rng(5)
    pair = {name: (rng.uniform(0.2, 0.9, 50), rng.uniform(-0.5, 0.4, 80))
            for name in ("A", "B", "C", "T")}
    colors = {"A": "#111111", "T": "#000000"}
    panels = {f"row {name}": {name: pair[name], "T": pair["T"]} for name in ("A", "B", "C")}
    fig = similarity_grid(panels, ncols=2, value_range=(-1, 1), bins=10, colors=colors)
    axes = fig.axes
    assert len(axes) == 4 and not axes[3].axison
    edges = np.linspace(-1, 1, 11)
    for ax, (title, data) in zip(axes, panels.items()):
        assert ax.get_title() == title and ax.get_legend() is None
        stairs = {p.get_label(): p for p in ax.patches if isinstance(p, StepPatch)}
        assert set(stairs) == {f"{m} ({k})" for m in data for k in ("pos", "neg")}
        for method, (positive, negative) in data.items():
            expected, _ = np.histogram(positive, bins=edges, density=True)
            np.testing.assert_allclose(stairs[f"{method} (pos)"].get_data().values, expected)
            assert stairs[f"{method} (pos)"].get_edgecolor() == \
                matplotlib.colors.to_rgba(method_color(method, colors))
    # compared panels: both axes shared, a log density axis from the highest peak down
    for ax in axes[1:3]:
        assert axes[0].get_shared_y_axes().joined(axes[0], ax)
        assert axes[0].get_shared_x_axes().joined(axes[0], ax)
    peak = max(p.get_data().values.max() for ax in axes for p in ax.patches
               if isinstance(p, StepPatch))
    assert [ax.get_yscale() for ax in axes[:3]] == ["log"] * 3
    assert axes[2].get_ylim() == pytest.approx(
        (10.0 ** (np.floor(np.log10(1.5 * peak)) - SIMILARITY_DECADES), 1.5 * peak))
    assert [ax.get_ylabel() for ax in axes[:3]] == ["density (log scale)", "",
                                                    "density (log scale)"]
    # x label on the lowest panel of each column only
    assert [ax.get_xlabel() for ax in axes[:3]] == ["", "cosine similarity", "cosine similarity"]
    (legend,) = fig.legends
    assert legend.get_texts()[0].get_fontsize() == 10
    assert [t.get_text() for t in legend.get_texts()] == ["positive pairs", "negative pairs", "T"]
    assert [h.get_linestyle() for h in legend.legend_handles[:2]] == ["-", "--"]
    assert matplotlib.colors.to_hex(legend.legend_handles[2].get_color()) == "#000000"


def test_similarity_grid_defaults_to_the_range_of_all_panels():
    a = (np.array([0.1, 0.5]), np.array([-0.2, 0.0]))
    b = (np.array([0.9, 0.3]), np.array([-0.6, 0.2]))
    fig = similarity_grid({"a": {"a": a}, "b": {"b": b}}, bins=4)
    for ax in fig.axes:
        edges = next(p for p in ax.patches if isinstance(p, StepPatch)).get_data().edges
        np.testing.assert_allclose(edges, np.linspace(-0.6, 0.9, 5))
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    # a panel with two methods of its own names them in its own legend
    two = similarity_grid({"both": {"a": a, "b": b}})
    assert [t.get_text() for t in two.axes[0].get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="no panels"):
        similarity_grid({})


def test_roc_figure_is_one_titled_roc_panel():
    fpr = np.array([0.0, 1e-3, 1e-2, 0.1, 1.0])
    tpr = np.array([0.3, 0.6, 0.8, 0.9, 1.0])
    fig = roc_figure({"ArcFace": (fpr, tpr)}, min_far=1e-4, colors={"ArcFace": "#123456"},
                     legend={"loc": "upper left"})
    (ax,) = fig.axes
    assert ax.get_title() == "IJB-like 1:1 verification" and ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), tpr[1:])
    assert ax.lines[0].get_color() == "#123456"
    assert ax.get_xlim() == pytest.approx((1e-4, 1.0))
    assert tuple(fig.get_size_inches()) == pytest.approx((6.0, 4.5))
    assert roc_figure({"a": (fpr, tpr)}, title=None).axes[0].get_title() == ""


def test_landmark_figure_draws_the_found_and_true_points_on_each_face():
    from fkdlib.report.figures import landmark_figure

    images = np.zeros((3, 3, 16, 16), dtype=np.uint8)
    found = np.random.default_rng(0).uniform(0, 15, (3, 51, 2))
    truth = found + 1.0
    fig = landmark_figure(images, found, truth, titles=["a", "b", "c"], ncols=2)
    faces = [ax for ax in fig.axes if ax.images]
    assert len(faces) == 3 and [ax.get_title() for ax in faces] == ["a", "b", "c"]
    for k, ax in enumerate(faces):
        true_dots, found_dots = ax.collections
        np.testing.assert_allclose(true_dots.get_offsets(), truth[k])
        np.testing.assert_allclose(found_dots.get_offsets(), found[k])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["true", "found"]
    plt.close(fig)
    with pytest.raises(ValueError, match="same B"):
        landmark_figure(images, found[:2])
