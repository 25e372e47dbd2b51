import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from catdog_report import figures

HISTORY = {"accuracy": [0.5, 0.7, 0.9], "val_accuracy": [0.5, 0.6, 0.62],
           "loss": [0.7, 0.5, 0.3], "val_loss": [0.7, 0.65, 0.66]}


def test_grid_puts_dogs_on_top_and_cats_below() -> None:
    labels = [0, 1, 0, 1, 0, 1, 1, 0]  # 0 cats, 1 dogs
    images = np.zeros((8, 16, 16, 3), dtype=np.uint8)
    fig = figures.plot_grid(images, labels, ("cats", "dogs"), ("dogs", "cats"))
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["dogs"] * 3 + ["cats"] * 3
    assert "3 dogs on the top row; 3 cats on the second row" in figures.alt_text(fig)
    other = figures.plot_grid(images, labels, ("cats", "dogs"))  # default: the classes' order
    assert [ax.get_title() for ax in other.axes] == ["cats"] * 3 + ["dogs"] * 3


def test_history_plot_has_accuracy_and_loss() -> None:
    fig = figures.plot_history(HISTORY, "Model one")
    acc, loss = fig.axes
    assert [line.get_ydata().tolist() for line in acc.get_lines()] == [
        HISTORY["accuracy"], HISTORY["val_accuracy"]]
    assert loss.get_ylabel() == "loss" and "3 epochs" in figures.alt_text(fig)


def test_augmentation_shows_six() -> None:
    fig = figures.plot_augmentation([np.zeros((8, 8, 3))] * 6, "flips", "six flips")
    assert sum(bool(ax.get_images()) for ax in fig.axes) == 6


def test_comparison_figures() -> None:
    fig = figures.plot_metric_comparison({"model_one": HISTORY, "model_two": HISTORY},
                                         "val_accuracy", 0.5)
    assert len(fig.axes[0].get_lines()) == 3  # two models and the baseline
    table = pd.DataFrame({"test acc": [0.9, 0.6], "total params": [10, 20],
                          "train time (s)": [3.0, 4.0]}, index=["Model four", "Model one"])
    bars = figures.plot_test_accuracy(table)
    labels = [t.get_text() for t in bars.axes[0].texts]
    assert labels == ["60.0%", "90.0%"]
    assert len(figures.plot_tradeoffs(table).axes) == 2


def test_confusion_and_gallery() -> None:
    cm = pd.DataFrame([[3, 1], [0, 4]], index=["cats", "dogs"], columns=["cats", "dogs"])
    fig = figures.plot_confusion(cm, "Model one")
    assert [t.get_text() for t in fig.axes[0].texts][:2] == ["3\n75%", "1\n25%"]
    rows = pd.DataFrame({"true": ["cats"], "predicted": ["dogs"], "probability": [0.8]})
    gallery = figures.plot_misclassified([np.zeros((8, 8, 3))], rows, "Model one")
    assert [ax.get_title() for ax in gallery.axes if ax.get_images()] == [
        "true cats\npred dogs (80%)"]


def test_seed_band_and_seed_histories() -> None:
    runs = {"m": [{"val_accuracy": [0.5, 0.6]}, {"val_accuracy": [0.7, 0.8]}]}
    fig = figures.plot_seed_band(runs, "val_accuracy", {"m": "Model"}, {"m": "#ff0000"}, 0.5)
    ax = fig.axes[0]
    assert ax.get_lines()[0].get_ydata().tolist() == pytest.approx([0.6, 0.7])  # the mean
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert min(band) == pytest.approx(0.5) and max(band) == pytest.approx(0.8)  # min–max
    assert "mean of 2 seeds" in figures.alt_text(fig)
    seeds = figures.plot_seed_histories(runs["m"], [0, 1], "Model")
    assert [line.get_label() for line in seeds.axes[0].get_lines()] == ["seed 0", "seed 1"]


def test_test_accuracy_bars_have_wilson_error_bars() -> None:
    table = pd.DataFrame({"test acc": [0.935, 0.5], "test n": [200, 200]},
                         index=["Model four", "Baseline"])
    fig = figures.plot_test_accuracy(table, {"Model four": "#d62728"})
    ax = fig.axes[0]
    bars = [p for p in ax.patches]
    assert [round(b.get_width(), 3) for b in bars] == [0.5, 0.935]
    segments = ax.collections[0].get_segments()  # one error bar per bar: (low, high)
    lo, hi = segments[1][0][0], segments[1][1][0]
    from catdog_report import stats

    assert (lo, hi) == pytest.approx(stats.wilson_interval(187, 200))
    assert "95% intervals" in figures.alt_text(fig)
