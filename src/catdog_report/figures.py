"""Pure figure functions: each returns a matplotlib Figure whose label is its alt text."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are rendered to files, never to a screen

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from . import stats  # noqa: E402


def _ordinal(i: int) -> str:
    return ("top", "second", "third", "fourth", "fifth")[i] if i < 5 else f"{i + 1}th"


def _figure(w: float, h: float, alt: str) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    fig.set_label(alt)
    return fig


def plot_grid(images: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
              rows: Sequence[str] | None = None, per_row: int = 3) -> Figure:
    """A grid of photos, one row per class in `rows` (top first), `per_row` photos each."""
    labels = np.asarray(labels)
    rows = list(rows or class_names)
    picks = [np.flatnonzero(labels == class_names.index(c))[:per_row] for c in rows]
    fig = _figure(2.5 * per_row, 2.6 * len(rows),
                  f"A {len(rows)} by {per_row} grid of training photos: "
                  + "; ".join(f"{per_row} {c} on the {_ordinal(i)} row"
                              for i, c in enumerate(rows)))
    axes = np.atleast_2d(fig.subplots(len(rows), per_row))
    for r, idx in enumerate(picks):
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(idx):  # a class with fewer photos leaves its row short
                ax.imshow(images[idx[c]].astype("uint8"))
                ax.set_title(class_names[labels[idx[c]]])
    return fig


def plot_augmentation(images: Sequence[np.ndarray], title: str, alt: str) -> Figure:
    """Six augmented versions of one photo in a 2x3 grid."""
    fig = _figure(7.5, 5.2, alt)
    fig.suptitle(title)
    for ax, img in zip(fig.subplots(2, 3).ravel(), images, strict=False):  # six draws
        ax.imshow(np.clip(np.asarray(img), 0, 255).astype("uint8"))
        ax.axis("off")
    return fig


def plot_history(history: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Training and validation accuracy (left) and loss (right) per epoch."""
    epochs = np.arange(1, len(history["accuracy"]) + 1)
    fig = _figure(9, 3.6, f"{title}: training and validation accuracy and loss over "
                          f"{len(epochs)} epochs")
    for ax, metric in zip(fig.subplots(1, 2), ("accuracy", "loss"), strict=True):
        ax.plot(epochs, history[metric], "o-", label=f"training {metric}")
        ax.plot(epochs, history[f"val_{metric}"], "s-", label=f"validation {metric}")
        ax.set_title(f"{title}: {metric}")
        _finish_epochs(ax, metric, None)
    return fig


def _finish_epochs(ax: Any, label: str, baseline: float | None) -> None:
    """The dashed baseline, integer epoch ticks, labels, grid and legend of a curve plot."""
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", label=f"baseline {baseline:.0%}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_metric_comparison(histories: Mapping[str, Mapping[str, Sequence[float]]],
                           metric: str, baseline: float | None = None,
                           titles: Mapping[str, str] | None = None,
                           colours: Mapping[str, str] | None = None) -> Figure:
    """One validation metric of every model over epochs (each in its colour), with the
    baseline."""
    titles, colours = titles or {}, colours or {}
    label = metric.replace("val_", "validation ")
    fig = _figure(8, 4, f"{label} of every model over epochs"
                        + (f", with the {baseline:.0%} baseline" if baseline else ""))
    ax = fig.subplots()
    for name, h in histories.items():
        ax.plot(np.arange(1, len(h[metric]) + 1), h[metric], "o-", ms=3,
                color=colours.get(name), label=titles.get(name, name))
    _finish_epochs(ax, label, baseline)
    return fig


def plot_test_accuracy(table: pd.DataFrame, colours: Mapping[str, str] | None = None) -> Figure:
    """Test accuracy per model as labelled bars (colours by row name; grey otherwise)."""
    colours = colours or {}
    acc = table["test acc"].dropna()
    names, values = list(acc.index)[::-1], [float(v) for v in list(acc.values)[::-1]]
    bounds = ([stats.accuracy_interval(v, int(table.loc[m, "test n"]))
               for m, v in zip(names, values, strict=True)] if "test n" in table else [])
    fig = _figure(8, 3.6, "Bar chart of test accuracy per model with 95% intervals: "
                          + ", ".join(f"{m} {v:.1%}" for m, v in acc.items()))
    ax = fig.subplots()
    err = (np.array([[v - lo for v, (lo, _) in zip(values, bounds, strict=True)],
                     [hi - v for v, (_, hi) in zip(values, bounds, strict=True)]])
           if bounds else None)
    bars = ax.barh(names, values, xerr=err, capsize=4, error_kw={"ecolor": "#333333"},
                   color=[colours.get(str(m), "#8c8c8c") for m in names])
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values], padding=3,
                 label_type="center", color="white", fontweight="bold")
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("test accuracy")
    return fig


def plot_seed_band(histories: Mapping[str, Sequence[Mapping[str, Sequence[float]]]],
                   metric: str, titles: Mapping[str, str], colours: Mapping[str, str],
                   baseline: float | None = None) -> Figure:
    """A metric over epochs per model: the mean over seeds, with the min–max band."""
    label = metric.replace("val_", "validation ")
    n = max(len(runs) for runs in histories.values())
    fig = _figure(8, 4, f"{label} of every model over epochs: the mean of {n} seeds with "
                        "the range between the lowest and highest seed shaded")
    ax = fig.subplots()
    for name, runs in histories.items():
        curves = np.array([h[metric] for h in runs], dtype=float)
        epochs = np.arange(1, curves.shape[1] + 1)
        colour = colours.get(name)
        ax.plot(epochs, curves.mean(axis=0), "o-", ms=3, color=colour,
                label=f"{titles.get(name, name)} (mean of {len(runs)})")
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=colour,
                        alpha=0.2, linewidth=0)
    _finish_epochs(ax, label, baseline)
    return fig


def plot_seed_histories(histories: Sequence[Mapping[str, Sequence[float]]],
                        seeds: Sequence[int], title: str) -> Figure:
    """One model's validation accuracy per epoch, one line per seed."""
    fig = _figure(8, 3.6, f"{title}: validation accuracy per epoch for each of "
                          f"{len(seeds)} seeds")
    ax = fig.subplots()
    for seed, h in zip(seeds, histories, strict=True):
        ax.plot(np.arange(1, len(h["val_accuracy"]) + 1), h["val_accuracy"], "o-", ms=3,
                label=f"seed {seed}")
    ax.set_title(f"{title}: every seed")
    _finish_epochs(ax, "validation accuracy", None)
    return fig


def plot_tradeoffs(table: pd.DataFrame) -> Figure:
    """Test accuracy against parameter count (left) and training time (right)."""
    rows = table.dropna(subset=["train time (s)"])
    fig = _figure(9, 3.8, "Scatter plots of test accuracy against total parameters and "
                          "against training time, one point per model")
    for ax, col, scale, label in zip(fig.subplots(1, 2), ("total params", "train time (s)"),
                                     (1e6, 1.0), ("parameters (millions)", "training time (s)"),
                                     strict=True):
        x = rows[col].astype(float) / scale
        ax.scatter(x, rows["test acc"].astype(float), s=50)
        for i, (name, row) in enumerate(rows.iterrows()):
            ax.annotate(str(name), (float(row[col]) / scale, float(row["test acc"])),
                        textcoords="offset points", xytext=(5, 4 - 11 * (i % 2)), fontsize=8)
        ax.margins(x=0.25, y=0.15)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    return fig


def plot_confusion(counts: pd.DataFrame, title: str) -> Figure:
    """A confusion matrix with counts and row rates in each cell."""
    values = counts.to_numpy()
    rates = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    fig = _figure(4.2, 3.6, f"{title}: confusion matrix on the test split, "
                            + "; ".join(f"true {t} predicted {p}: {counts.loc[t, p]}"
                                        for t in counts.index for p in counts.columns))
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(counts.columns)), list(counts.columns))
    ax.set_yticks(range(len(counts.index)), list(counts.index))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def plot_misclassified(images: Sequence[np.ndarray], rows: pd.DataFrame,
                       title: str, limit: int = 8) -> Figure:
    """A gallery of misclassified photos captioned true / predicted / probability."""
    n = min(limit, len(rows))
    cols = min(4, max(n, 1))
    fig = _figure(2.2 * cols, 2.6 * ((n + cols - 1) // cols or 1),
                  f"{title}: {n} misclassified test photos with true and predicted labels")
    axes = np.atleast_1d(fig.subplots((n + cols - 1) // cols or 1, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, (_, row) in zip(axes, images, rows.head(n).iterrows(), strict=False):
        ax.imshow(np.asarray(img).astype("uint8"))
        ax.set_title(f"true {row['true']}\npred {row['predicted']} ({row['probability']:.0%})",
                     fontsize=8)
    return fig


WRONG = "#c00000"  # captions of wrong predictions


@dataclass(frozen=True)
class Panel:
    """One set of maps over the photos: its label, the maps (photos, height, width) in
    [0, 1], and per photo an optional caption and whether that prediction is wrong."""

    label: str
    maps: np.ndarray
    captions: Sequence[str] = ()
    wrong: Sequence[bool] = ()


def _bare(ax: Any) -> None:
    """An image cell: no ticks, no frame, but room for row and column labels."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_gradcam(images: Sequence[np.ndarray], photo: Panel, panels: Sequence[Panel], alt: str,
                 photos_in_rows: bool = False, names: Sequence[str] = ()) -> Figure:
    """Grad-CAM maps over their photos: each photo plain (captioned by `photo`), then once
    per panel with its map overlaid in the jet colour map (red: most heat). Photos run
    along the columns (one model's maps in the rows), or along the rows (`photos_in_rows`:
    one panel per column, to compare models on the same photos); `names` heads each photo."""
    n, k = len(images), len(panels) + 1
    rows, cols = (n, k) if photos_in_rows else (k, n)
    fig = _figure(1.9 * cols + 0.5, 1.95 * rows + 0.3, alt)
    axes = np.array(fig.subplots(rows, cols, squeeze=False))
    for i, img in enumerate(images):
        for j, panel in enumerate([photo, *panels]):
            ax = axes[i, j] if photos_in_rows else axes[j, i]
            _bare(ax)
            ax.imshow(np.asarray(img).astype("uint8"))
            if j > 0:
                ax.imshow(panel.maps[i], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0,
                          interpolation="bilinear")
            if panel.captions:
                wrong = bool(panel.wrong) and bool(panel.wrong[i])
                ax.set_xlabel(panel.captions[i], fontsize=7, color=WRONG if wrong else "black")
            header = textwrap.fill(panel.label, 26)
            if i == 0:
                (ax.set_title if photos_in_rows else ax.set_ylabel)(header, fontsize=8)
            if j == 0 and names:
                (ax.set_ylabel if photos_in_rows else ax.set_title)(names[i], fontsize=7)
    return fig

def alt_text(fig: Any) -> str:
    """The alt text a figure function attached."""
    return str(fig.get_label() or "figure")
