"""One figure style for every notebook, and the plots they all share.

The style is a clean white grid with readable fonts and the Okabe–Ito colour-blind-safe
palette; a method keeps its colour in every figure (:func:`method_color`). Figures are saved
as PNG (raster, >= 200 dpi), PDF and SVG, each rendered to memory and written atomically,
with dates stripped and a fixed SVG id salt so the same figure gives the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import StepPatch
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

from ..errors import ConfigError
from ..io import atomic_write_bytes

#: Okabe & Ito (2008) colour-blind-safe palette, with a neutral grey for baselines.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000", "#7F7F7F")

# Fixed colours for the methods the notebooks compare; others get a stable palette colour.
_METHOD_COLORS = {
    "teacher": "#000000",
    "student": "#7F7F7F", "baseline": "#7F7F7F", "scratch": "#7F7F7F", "softmax": "#7F7F7F",
    "norm_softmax": "#56B4E9", "sphereface": "#009E73", "cosface": "#E69F00",
    "arcface": "#0072B2", "combined": "#CC79A7", "cm": "#CC79A7",
    "kd": "#E69F00", "fitnet": "#56B4E9", "at": "#009E73", "rkd": "#CC79A7", "pkt": "#F0E442",
    "l_fm": "#56B4E9", "l_sr": "#0072B2",
    "fcd": "#0072B2",
    "ours": "#D55E00", "srrl": "#D55E00", "l_fm+l_sr": "#D55E00", "fcd+icd": "#D55E00",
    "icd": "#D55E00", "vargfacenet": "#D55E00",
}

#: rcParams of the fkdlib figure style.
STYLE: dict[str, Any] = {
    "figure.figsize": (6.0, 4.0),
    "figure.dpi": 100,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": "#333333",
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.8,
    "font.size": 10,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "figure.constrained_layout.use": True,
    "pdf.fonttype": 42,  # TrueType: text stays editable and searchable in the PDF
    "svg.hashsalt": "fkdlib",  # deterministic element ids in the SVG
}

_FORMATS = ("png", "pdf", "svg")
_NO_DATES = {"png": {}, "pdf": {"CreationDate": None, "ModDate": None}, "svg": {"Date": None}}


def use_style() -> None:
    """Apply the fkdlib style globally (a notebook's first cell)."""
    mpl.rcParams.update(STYLE)


def style_context() -> contextlib.AbstractContextManager:
    """The fkdlib style for a ``with`` block only; the previous rcParams come back after."""
    return mpl.rc_context(STYLE)


def _canonical(name: str) -> str:
    """Lower case, hyphens and spaces as underscores, parameters in brackets dropped (so
    ``"CM (1,0.3,0.2)"`` and ``"cm"`` share a colour)."""
    base = str(name).split("(")[0] if not str(name).startswith("(") else str(name)
    return base.strip().lower().replace("-", "_").replace(" ", "_")


def method_color(name: str, colors: Mapping[str, str] | None = None) -> str:
    """The colour of a method, the same in every figure and every process.

    ``colors`` (a notebook's own colour map, e.g. one colour per backbone) takes precedence.

    Known names (``arcface``, ``teacher``, ``kd``, ``ours`` ...; case, spaces and hyphens
    ignored) have fixed colours; any other name gets a palette colour chosen by a hash of the
    name (SHA-256, not Python's salted ``hash``), so it is stable too.
    """
    if colors and name in colors:
        return colors[name]
    key = _canonical(name)
    if key in _METHOD_COLORS:
        return _METHOD_COLORS[key]
    digest = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16)
    return PALETTE[digest % len(PALETTE)]


def save_figure(fig: Figure, path_stem: str | os.PathLike, dpi: int = 300) -> list[Path]:
    """Write ``<stem>.png``, ``<stem>.pdf`` and ``<stem>.svg`` atomically; return the paths.

    Each format is rendered to memory first, so a failure leaves no partial file. The same
    figure gives the same bytes in every format, in every process: no creation dates
    (:data:`_NO_DATES`) and a fixed SVG id salt.
    """
    if dpi < 200:
        raise ConfigError(f"figures are saved at 200 dpi or more, got dpi={dpi}")
    stem = Path(path_stem)
    if stem.name in ("", ".", ".."):
        raise ConfigError(f"path_stem must name a file (without extension), got {path_stem!r}")
    paths = []
    for fmt in _FORMATS:
        buffer = io.BytesIO()
        # without a salt the SVG's element ids are random; set here too, so a figure saved
        # outside the fkdlib style is just as reproducible
        with mpl.rc_context({"svg.hashsalt": STYLE["svg.hashsalt"]}):
            fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight",
                        metadata=_NO_DATES[fmt])
        path = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths


def _vector(values: Any, what: str) -> np.ndarray:
    """A finite 1-D float array from a list, NumPy array or (CPU/GPU) torch tensor."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return array


def readable_y_scale(ax: Axes, values: Any, label: str) -> str:
    """A y axis for ``values`` (e.g. every training loss a panel shows) labelled ``label``.

    Logarithmic when the values are positive and span a decade or more, with plain-number
    labels at 1, 2 and 5 times each power of ten (matplotlib's default labels only the
    powers of ten, so a log axis over less than a decade or two shows one or two labels, in
    10^x notation) and ``, log scale`` added to the label; linear otherwise, where a log axis
    gains nothing. Returns the scale, ``"log"`` or ``"linear"``.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size and array.min() > 0 and array.max() >= 10 * array.min():
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(f"{label}, log scale")
        return "log"
    ax.set_yscale("linear")
    ax.set_ylabel(label)
    return "linear"


def _axes(ax: Axes | None) -> Axes:
    return plt.subplots()[1] if ax is None else ax


def plot_similarity_distributions(
    data: Mapping[str, tuple[Any, Any]], ax: Axes | None = None, bins: int = 80,
    value_range: tuple[float, float] | None = None, colors: Mapping[str, str] | None = None,
    legend: bool = True,
) -> Axes:
    """Densities of positive- and negative-pair similarities per method on shared axes.

    Colours come from :func:`method_color` (``colors`` overrides it per method); ``legend``
    False leaves the legend to the caller (one legend for a figure of several panels).

    Each method has one colour: positive pairs solid, negative pairs dashed, drawn as
    histogram densities (``numpy.histogram(density=True)``) over common bins, with a vertical
    line at each mean. ``value_range`` defaults to the range of all the data.
    """
    if not data:
        raise ValueError("no methods to plot: pass {method: (positive, negative)}")
    arrays = {}
    for method, pair in data.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"data[{method!r}] must be a (positive, negative) pair of arrays")
        arrays[method] = (_vector(pair[0], f"positive similarities of {method!r}"),
                          _vector(pair[1], f"negative similarities of {method!r}"))
    if value_range is None:
        everything = np.concatenate([np.concatenate(p) for p in arrays.values()])
        value_range = (float(everything.min()), float(everything.max()))
        if value_range[0] == value_range[1]:
            value_range = (value_range[0] - 0.5, value_range[1] + 0.5)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    ax = _axes(ax)
    for method, (positive, negative) in arrays.items():
        color = method_color(method, colors)
        for kind, values, style in (("pos", positive, "-"), ("neg", negative, "--")):
            density, _ = np.histogram(values, bins=edges, density=True)
            ax.stairs(density, edges, color=color, linestyle=style, linewidth=1.6,
                      label=f"{method} ({kind})")
            ax.axvline(values.mean(), color=color, linestyle=style, linewidth=1.0, alpha=0.8,
                       label=f"_{method} ({kind}) mean")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    if legend:
        ax.legend(loc="best", ncol=2 if len(arrays) > 2 else 1)
    return ax


def plot_roc(curves: Mapping[str, tuple[Any, Any]], ax: Axes | None = None,
             min_far: float | None = None, colors: Mapping[str, str] | None = None,
             styles: Mapping[str, Mapping[str, Any]] | None = None,
             legend: Mapping[str, Any] | None = None) -> Axes:
    """ROC curves, TAR against FAR on a logarithmic FAR axis.

    Points with FAR = 0 cannot be placed on a log axis and are left out; ``min_far`` sets
    the left end of the axis (default: the smallest positive FAR plotted, at most 0.1).
    Colours come from :func:`method_color` (``colors`` overrides it per method); ``styles``
    adds line options per method (e.g. ``{"KD": {"linestyle": "--"}}``); ``legend`` holds
    options for the legend (default: lower right).
    """
    if not curves:
        raise ValueError("no methods to plot: pass {method: (fpr, tpr)}")
    ax = _axes(ax)
    smallest = np.inf
    for method, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"curves[{method!r}] must be an (fpr, tpr) pair of arrays")
        fpr = _vector(pair[0], f"FAR of {method!r}")
        tpr = _vector(pair[1], f"TAR of {method!r}")
        if fpr.shape != tpr.shape:
            raise ValueError(f"{method!r}: FAR and TAR lengths differ ({fpr.size} vs {tpr.size})")
        if fpr.min() < 0 or fpr.max() > 1 or tpr.min() < 0 or tpr.max() > 1:
            raise ValueError(f"{method!r}: FAR and TAR must be rates in [0, 1]")
        keep = fpr > 0
        if not keep.any():
            raise ValueError(f"{method!r}: every FAR is 0, nothing can be drawn on a log axis")
        smallest = min(smallest, float(fpr[keep].min()))
        ax.plot(fpr[keep], tpr[keep], label=method,
                **{"color": method_color(method, colors), **(styles or {}).get(method, {})})
    ax.set_xscale("log")
    ax.set_xlim(min_far if min_far is not None else min(smallest, 0.1), 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.legend(**({"loc": "lower right"} | dict(legend or {})))
    return ax


#: Most labels (identities) a scatter's legend lists; more are told apart by colour only.
MAX_LEGEND_LABELS = 12


#: Marker shapes of the labels of a scatter (:func:`label_styles`).
LABEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Okabe–Ito's eight colours (the palette without the baseline grey).
_LABEL_COLORS = PALETTE[:8]


def label_styles(count: int) -> list[tuple[Any, str]]:
    """A distinct ``(colour, marker)`` for each of ``count`` labels (identities, classes).

    Label ``i`` gets Okabe–Ito colour ``i mod 8`` and marker ``(i + i div 8) mod 8`` of
    :data:`LABEL_MARKERS`: up to 8 labels differ both in colour and in shape (told apart
    without colour vision too, and where orange, vermilion and yellow dots are hard to tell
    apart), up to 64 in the pair. Beyond 64, evenly spaced samples of turbo, all circles.
    """
    if count <= len(_LABEL_COLORS) * len(LABEL_MARKERS):
        return [(_LABEL_COLORS[i % len(_LABEL_COLORS)],
                 LABEL_MARKERS[(i + i // len(_LABEL_COLORS)) % len(LABEL_MARKERS)])
                for i in range(count)]
    return [(mpl.colormaps["turbo"](i / (count - 1)), "o") for i in range(count)]


def plot_embedding_2d(xy: Any, labels: Any, ax: Axes | None = None,
                      title: str | None = None) -> Axes:
    """Scatter of 2-D points (t-SNE / UMAP output, or raw 2-D features) coloured by label.

    One scatter per label, in sorted label order, each in its own colour and marker
    (:func:`label_styles`); a legend is drawn for up to :data:`MAX_LEGEND_LABELS` labels.
    """
    if hasattr(xy, "detach"):
        xy = xy.detach().cpu().numpy()
    points = np.asarray(xy, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {points.shape}")
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.shape != (points.shape[0],):
        raise ValueError(f"labels must have shape ({points.shape[0]},), got {labels.shape}")
    ax = _axes(ax)
    unique = sorted(np.unique(labels).tolist())
    for label, (color, marker) in zip(unique, label_styles(len(unique))):
        chosen = points[labels == label]
        ax.scatter(chosen[:, 0], chosen[:, 1], s=14, color=color, marker=marker, alpha=0.85,
                   linewidths=0, label=str(label))
    ax.set_aspect("equal", adjustable="datalim")
    if len(unique) <= MAX_LEGEND_LABELS:
        ax.legend(loc="best", markerscale=1.5, fontsize=8)
    if title:
        ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------- whole figures
# Each returns a matplotlib Figure (constrained layout) that a notebook saves in one call.


def _panel_grid(count: int, ncols: int | None, panel_size: tuple[float, float],
                **subplots: Any) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` panels, ``ncols`` per row (default: one row); cells past the last
    panel are switched off. Returns the figure and its panels in row-major order."""
    if count < 1:
        raise ValueError("a figure needs at least one panel")
    ncols = count if ncols is None else max(1, min(int(ncols), count))
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                             figsize=(panel_size[0] * ncols, panel_size[1] * nrows), **subplots)
    flat = list(axes.flat)
    for extra in flat[count:]:
        extra.set_axis_off()
    return fig, flat[:count]


def projection_grid(panels: Mapping[str, tuple[Any, Any]], ncols: int | None = None,
                    panel_size: tuple[float, float] = (3.4, 3.6), legend: bool | str = False,
                    ticks: bool = False) -> Figure:
    """Several 2-D projections (t-SNE / UMAP / PCA output, or raw 2-D features) in one figure.

    ``panels`` maps each panel's title to its ``(xy (n, 2), labels (n,))``; the panels are laid
    out ``ncols`` per row in the mapping's order (default: one row), each drawn by
    :func:`plot_embedding_2d`. A label keeps its colour and marker across panels when the
    panels show the same labels (styles follow the sorted labels). No panel has its own legend: ``legend``
    True (or a string, the legend's title, e.g. ``"identity"``) draws one for the figure, on
    the right, taken from the first panel, when it shows at most :data:`MAX_LEGEND_LABELS`
    labels. ``ticks`` False hides the axis ticks (t-SNE and UMAP
    coordinates carry no meaning); keep them for real 2-D features.
    """
    if not panels:
        raise ValueError("no panels to plot: pass {title: (xy, labels)}")
    fig, axes = _panel_grid(len(panels), ncols, panel_size)
    for ax, (title, pair) in zip(axes, panels.items()):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"panels[{title!r}] must be an (xy, labels) pair")
        plot_embedding_2d(pair[0], pair[1], ax=ax, title=title)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        if not ticks:
            ax.set(xticks=[], yticks=[])
    handles, names = axes[0].get_legend_handles_labels()
    if legend and len(names) <= MAX_LEGEND_LABELS:
        fig.legend(handles, names, loc="outside right upper", markerscale=2, fontsize=9,
                   title=legend if isinstance(legend, str) else None, title_fontsize=9)
    return fig


#: Decades of density below the highest peak that a :func:`similarity_grid` shows.
SIMILARITY_DECADES = 3


def similarity_grid(panels: Mapping[str, Mapping[str, tuple[Any, Any]]], ncols: int = 3,
                    panel_size: tuple[float, float] = (4.0, 3.0),
                    value_range: tuple[float, float] | None = None, bins: int = 80,
                    colors: Mapping[str, str] | None = None) -> Figure:
    """Positive- and negative-pair similarity densities, one panel per title.

    ``panels`` maps each panel's title to the ``{method: (positive, negative)}`` it shows
    (:func:`plot_similarity_distributions`; ``colors`` overrides :func:`method_color`); panels
    are laid out ``ncols`` per row. The panels are compared, so they share both axes: x is
    ``value_range`` (default the range of all the data, so bins are comparable) and y is a
    logarithmic density axis from the highest peak of any panel down
    :data:`SIMILARITY_DECADES` decades. On a linear axis the sharp positive peaks of a
    well-trained model (densities of 10 to 30) flatten every negative distribution (density
    below 1) onto the x axis; on the log axis both stay readable, and so does their overlap,
    the tails that verification errors come from.

    One legend for the figure, below the panels: the line styles (positive pairs solid,
    negative pairs dashed) and the colour of every method drawn in more than one panel (a
    reference, e.g. the teacher). A panel's own method is named by its title; a panel with
    several methods of its own also gets a legend of their colours.
    """
    if not panels:
        raise ValueError("no panels to plot: pass {title: {method: (positive, negative)}}")
    if value_range is None:
        values = [np.concatenate([_vector(p[0], "positive similarities"),
                                  _vector(p[1], "negative similarities")])
                  for data in panels.values() for p in data.values()
                  if isinstance(p, (tuple, list)) and len(p) == 2]
        if values:
            everything = np.concatenate(values)
            value_range = (float(everything.min()), float(everything.max()))
            if value_range[0] == value_range[1]:
                value_range = (value_range[0] - 0.5, value_range[1] + 0.5)
    fig, axes = _panel_grid(len(panels), ncols, panel_size, sharex=True, sharey=True)
    counts: dict[str, int] = {}
    for data in panels.values():
        for method in data:
            counts[method] = counts.get(method, 0) + 1
    shared = [method for method, count in counts.items() if count > 1]
    ncols = min(ncols, len(panels))
    for index, (ax, (title, data)) in enumerate(zip(axes, panels.items())):
        plot_similarity_distributions(data, ax=ax, bins=bins, value_range=value_range,
                                      colors=colors, legend=False)
        ax.set_title(title)
        own = [method for method in data if method not in shared]
        if len(own) > 1:
            ax.legend([Line2D([], [], color=method_color(m, colors)) for m in own], own,
                      loc="upper left")
        if index < len(panels) - ncols:
            ax.set_xlabel("")
        else:  # the lowest panel of its column: its tick labels too
            ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_ylabel("density (log scale)" if index % ncols == 0 else "")
    peak = max(float(patch.get_data().values.max()) for ax in axes for patch in ax.patches
               if isinstance(patch, StepPatch))
    top = 1.5 * peak  # densities of data inside the bins: the peak is positive
    axes[0].set_yscale("log")  # shared: every panel
    axes[0].set_ylim(10.0 ** (np.floor(np.log10(top)) - SIMILARITY_DECADES), top)
    axes[0].yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes[0].xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    key = [Line2D([], [], color="0.3", linestyle="-"),
           Line2D([], [], color="0.3", linestyle="--")]
    key += [Line2D([], [], color=method_color(m, colors)) for m in shared]
    names = ["positive pairs", "negative pairs", *shared]
    fig.legend(key, names, loc="outside lower center", ncol=len(names), fontsize=10)
    return fig


def roc_figure(curves: Mapping[str, tuple[Any, Any]],
               title: str | None = "IJB-like 1:1 verification",
               figsize: tuple[float, float] = (6.0, 4.5), **options: Any) -> Figure:
    """One ROC panel (:func:`plot_roc` of ``curves``, with its ``options``: ``min_far``,
    ``colors``, ``styles``, ``legend``) under ``title``."""
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    plot_roc(curves, ax=ax, **options)
    if title:
        ax.set_title(title)
    return fig


#: Markers of the clustering methods in :func:`plot_cluster_quality` (others cycle below).
_CLUSTER_METHOD_MARKERS = {"kmeans": "o", "agglomerative": "s"}
_EXTRA_MARKERS = ("^", "D", "v", "P", "X")
_CLUSTER_METHOD_NAMES = {"kmeans": "k-means", "agglomerative": "agglomerative (Ward)"}
_CLUSTER_METRIC_NAMES = {"ami": "AMI", "purity": "purity"}


def plot_cluster_quality(table: Any, metric: str = "ami", ax: Axes | None = None,
                         colors: Mapping[str, str] | None = None,
                         title: str | None = None) -> Figure:
    """Dot-and-whisker plot of a :func:`~fkdlib.evaluation.clustering.cluster_quality` table.

    One group per target along x (in the table's order; the tick label names the target and
    its cluster count ``k``), one point per model and clustering method with its bootstrap
    interval as a whisker: models told apart by colour (:func:`method_color`, ``colors``
    overrides it), methods by marker (k-means ``o``, agglomerative ``s``). ``metric`` is
    ``"ami"`` or ``"purity"``; y runs from 0 to 1 (lower if an interval dips below 0). A
    missing interval (``n_boot=0``) draws the point alone. ``title`` defaults to one naming
    the metric. Draws on ``ax`` when given, else on a new figure; returns the figure.
    """
    if metric not in _CLUSTER_METRIC_NAMES:
        raise ValueError(f"metric must be 'ami' or 'purity', got {metric!r}")
    needed = ["model", "method", "target", metric, f"{metric}_ci_low", f"{metric}_ci_high"]
    missing = [column for column in needed if column not in getattr(table, "columns", ())]
    if missing:
        raise ValueError(f"table lacks the columns {missing}; pass the DataFrame that "
                         "fkdlib.evaluation.clustering.cluster_quality returns")
    if len(table) == 0:
        raise ValueError("the table has no rows to plot")
    if table.duplicated(["model", "method", "target"]).any():
        raise ValueError("the table has several rows for one (model, method, target)")
    values = table[metric].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the table's {metric} column holds NaN or infinite values")
    models = list(dict.fromkeys(table["model"]))
    methods = list(dict.fromkeys(table["method"]))
    targets = list(dict.fromkeys(table["target"]))
    markers = {method: _CLUSTER_METHOD_MARKERS.get(method, _EXTRA_MARKERS[i % len(_EXTRA_MARKERS)])
               for i, method in enumerate(methods)}
    series = [(model, method) for model in models for method in methods]
    if ax is None:
        width = min(14.0, max(5.5, 2.4 + len(targets) * max(0.9, 0.11 * len(series))))
        fig, ax = plt.subplots(figsize=(width, 4.0), layout="constrained")
    else:
        fig = ax.figure
    step = min(0.8 / len(series), 0.2)
    rows = {(r.model, r.method, r.target): r for r in table.itertuples(index=False)}
    for index, (model, method) in enumerate(series):
        chosen = [(t, rows[(model, method, targets[t])]) for t in range(len(targets))
                  if (model, method, targets[t]) in rows]
        if not chosen:
            continue
        x = np.array([t for t, _ in chosen]) + (index - (len(series) - 1) / 2) * step
        y = np.array([getattr(row, metric) for _, row in chosen], dtype=np.float64)
        low = np.array([getattr(row, f"{metric}_ci_low") for _, row in chosen], dtype=np.float64)
        high = np.array([getattr(row, f"{metric}_ci_high") for _, row in chosen],
                        dtype=np.float64)
        yerr = np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0).clip(min=0.0)
        color = method_color(model, colors)
        hollow = len(methods) > 1 and methods.index(method) % 2 == 1
        ax.errorbar(x, y, yerr=yerr, fmt=markers[method], color=color, markersize=6.5,
                    markerfacecolor="white" if hollow else color, markeredgewidth=1.5,
                    elinewidth=1.6, capsize=2.5, linestyle="none", label=f"{model} · {method}")
    for t in range(1, len(targets), 2):  # faint bands tell the target groups apart
        ax.axvspan(t - 0.5, t + 0.5, color="#F2F2F2", zorder=0, linewidth=0)
    clusters = {}
    if "clusters" in table.columns:
        for target, k in zip(table["target"], table["clusters"]):
            clusters.setdefault(target, k)
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels([str(t).replace("_", " ") + (f"\nk = {clusters[t]}" if t in clusters
                                                     else "") for t in targets])
    ax.set_xlim(-0.5, len(targets) - 0.5)
    ax.xaxis.grid(False)
    lowest = np.nanmin(np.r_[values, table[f"{metric}_ci_low"].to_numpy(dtype=np.float64)])
    ax.set_ylim(min(0.0, np.floor(lowest * 20) / 20), 1.02)
    ax.set_ylabel(_CLUSTER_METRIC_NAMES[metric])
    ax.set_xlabel("target the clusters are scored against")
    name = _CLUSTER_METRIC_NAMES[metric]
    ax.set_title(title if title is not None else
                 f"Cluster {name} of the embeddings, with identity-bootstrap intervals")
    # one legend in two sections, models (colour) then clustering methods (marker), each under
    # a bold heading; the method markers are dark grey, no model's colour
    blank = Line2D([], [], linestyle="none")
    handles = [blank] + [Line2D([], [], linestyle="none", marker="o", markersize=7,
                                color=method_color(m, colors)) for m in models]
    names = ["model"] + [str(m) for m in models]
    if len(methods) > 1:
        handles += [blank] + [Line2D([], [], linestyle="none", marker=markers[m], markersize=7,
                                     color="0.25", markeredgewidth=1.5,
                                     markerfacecolor="white" if i % 2 else "0.25")
                              for i, m in enumerate(methods)]
        names += ["clustering"] + [_CLUSTER_METHOD_NAMES.get(m, str(m)) for m in methods]
    legend = ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       borderaxespad=0, handletextpad=0.4)
    for text, handle in zip(legend.get_texts(), handles):
        if handle is blank:
            text.set_fontweight("bold")
    return fig


# Panels of the training-health figure: measure, axis label, the gate's field, and whether a
# model fails by being below (True) or above (False) the threshold.
_HEALTH_PANELS = (
    ("train_top1", "training top-1", "min_train_top1", True),
    ("max_weight_cosine", "largest cosine between two class weights", "max_weight_cosine",
     False),
    ("effective_dim", "effective dimension of test embeddings", "min_effective_dim", True),
    ("final_loss_drop", "loss drop in the last epoch", "max_final_loss_drop", False),
)


def plot_training_health(table: Any, gate: Any, colors: Mapping[str, str] | None = None
                         ) -> Figure:
    """The training-health table (:func:`~fkdlib.evaluation.health.model_health`) against its
    gate (:class:`~fkdlib.evaluation.health.HealthGate`): one panel per measure, one row per
    model with a dot per seed (hollow when that run fails the gate), the gate's threshold as a
    line and its failing side shaded. What a collapsed margin loss looks like: training top-1
    far from 1, two class weights at cosine ≈ 1, a handful of effective dimensions."""
    needed = ["model", "seed", "converged"] + [p[0] for p in _HEALTH_PANELS]
    missing = [column for column in needed if column not in getattr(table, "columns", ())]
    if missing:
        raise ConfigError(f"the health table lacks the columns {missing}; pass the DataFrame "
                          "of fkdlib.evaluation.health.model_health")
    models = list(dict.fromkeys(table["model"]))
    rows = np.arange(len(models))
    fig, axes = plt.subplots(1, len(_HEALTH_PANELS), figsize=(3.6 * len(_HEALTH_PANELS),
                                                               0.45 * len(models) + 1.6),
                             sharey=True, squeeze=False)
    for ax, (column, label, field, below_fails) in zip(axes[0], _HEALTH_PANELS):
        values = table[column].to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        threshold = float(getattr(gate, field))
        low = min([threshold, *finite]) if finite.size else threshold
        high = max([threshold, *finite]) if finite.size else threshold
        pad = 0.08 * (high - low or 1.0)
        ax.set_xlim(low - pad, high + pad)
        if below_fails:
            ax.axvspan(low - pad, threshold, color="#FBE3E3", zorder=0)
        else:
            ax.axvspan(threshold, high + pad, color="#FBE3E3", zorder=0)
        ax.axvline(threshold, color="#990000", lw=1)
        for row, model in zip(rows, models):
            runs = table[table["model"] == model]
            color = method_color(model, colors)
            for value, healthy in zip(runs[column], runs["converged"].astype(bool)):
                ax.plot(value, row, "o", color=color, markersize=7,
                        markerfacecolor=color if healthy else "white")
        ax.set(xlabel=label)
        # a few ticks: panels are narrow and small fractions print wide
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.grid(axis="y", visible=False)
    axes[0, 0].set_yticks(rows, models)
    axes[0, 0].set_ylim(len(models) - 0.5, -0.5)
    fig.suptitle("Training health of every model and seed (shaded: fails the gate; hollow: a "
                 "run that fails it)", fontsize=11)
    return fig


def landmark_figure(images_u8: Any, predicted: Any, target: Any | None = None,
                    titles: Any | None = None, ncols: int = 6,
                    panel_size: tuple[float, float] = (1.8, 2.0)) -> Figure:
    """Faces with the landmarks a network found (filled dots) and, when given, the true ones
    (hollow circles), e.g. FAN's predictions on SynthFace (FAN-Face, thesis ch. 3).

    Args:
        images_u8: ``(B, 3, H, W)`` uint8 images.
        predicted, target: ``(B, N, 2)`` landmarks in pixels, pixel centres at integers.
        titles: one short title per face (for example its yaw and NME).
    """
    images = np.asarray(images_u8)
    predicted = np.asarray(predicted, dtype=float)
    if images.ndim != 4 or images.shape[1] != 3 or predicted.shape[:1] != images.shape[:1]:
        raise ValueError(f"need (B, 3, H, W) images and (B, N, 2) landmarks for the same B, got "
                         f"{images.shape} and {predicted.shape}")
    fig, axes = _panel_grid(len(images), ncols, panel_size)
    for k, ax in enumerate(axes):
        ax.imshow(images[k].transpose(1, 2, 0), interpolation="nearest")
        if target is not None:
            truth = np.asarray(target[k], dtype=float)
            ax.scatter(truth[:, 0], truth[:, 1], s=14, facecolors="none",
                       edgecolors="white", linewidths=0.8, label="true")
        ax.scatter(predicted[k, :, 0], predicted[k, :, 1], s=5, color=PALETTE[1],
                   label="found")
        ax.set(xticks=[], yticks=[])
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=8)
    if target is not None:
        # a grey box, so that the white "true" circles show in the legend too
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2,
                   fontsize=8, frameon=True, facecolor="0.35", edgecolor="0.35",
                   framealpha=1.0, labelcolor="white")
    return fig
