"""Page-side helpers: evaluation display, tables, figure encoding."""

from typing import Any

import numpy as np
import pandas as pd
import pytest

from catdog_report import figures, notebook
from catdog_report.training import Run


class FakeStudy:
    def test_images(self, files: list[str]) -> list[np.ndarray]:
        return [np.full((8, 8, 3), i * 40, dtype=np.uint8) for i, _ in enumerate(files)]


def _run(probs: list[list[float]], true: list[int]) -> Run:
    files = [f"validation/x/{i}.jpg" for i in range(len(true))]
    return Run({"model": "model_one", "class_names": ["cats", "dogs"],
                "predictions": {"files": files, "true": true, "prob": probs}}, None, True)  # type: ignore[arg-type]


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    out: list[Any] = []
    monkeypatch.setattr(notebook, "show", lambda fig, caption=None: out.append((fig, caption)))
    monkeypatch.setattr(notebook, "say", lambda text: out.append(text))
    return out


def test_gallery_shows_exactly_the_known_mistakes(shown: list[Any]) -> None:
    # a "model" that is wrong on photos 1 and 3, most confidently on 3
    run = _run([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.95, 0.05]], [0, 0, 1, 1])
    notebook.show_evaluation(FakeStudy(), run, "Model one")  # type: ignore[arg-type]
    (confusion, _), (gallery, caption) = shown
    assert [t.get_text() for t in confusion.axes[0].texts] == ["1\n50%", "1\n50%",
                                                               "1\n50%", "1\n50%"]
    titles = [ax.get_title() for ax in gallery.axes if ax.get_images()]
    assert titles == ["true dogs\npred cats (95%)", "true cats\npred dogs (60%)"]
    assert "2 of the 2 test photos" in caption


def test_note_when_there_are_no_mistakes(shown: list[Any]) -> None:
    notebook.show_evaluation(FakeStudy(), _run([[0.9, 0.1], [0.1, 0.9]], [0, 1]), "Model four")  # type: ignore[arg-type]
    assert shown[-1] == "Model four misclassified none of the 2 test photos."


def test_markdown_table_formats_and_marks_the_best() -> None:
    df = pd.DataFrame({"acc": [0.5, 0.75], "n": [1000, None]},
                      index=pd.Index(["a", "b"], name="model"))
    text = notebook.markdown_table(df, {"acc": ".1%", "n": ","}, {"acc": 0.75})
    assert text.splitlines() == ["| model | acc | n |", "|---|--:|--:|",
                                 "| a | 50.0% | 1,000.0 |", "| b | **75.0%** | – |"]
    words = pd.DataFrame({"type": ["Conv2D", "Dense"], "shape": ["(None, 8)", "(None, 2)"],
                          "claimed": ["62.0%–65.0%", "–"]}, index=["x", "y"])
    assert notebook.markdown_table(words).splitlines()[1] == "|---|:--|:--|--:|"
    bounds = pd.DataFrame({"p": ["< 0.001", "–"], "q": ["0.205", "≥ 0.05"]}, index=["x", "y"])
    assert notebook.markdown_table(bounds).splitlines()[1] == "|---|--:|--:|"  # p-values


def test_figures_are_encoded_for_the_web() -> None:
    plot = figures.plot_history({"accuracy": [0.5, 0.6], "val_accuracy": [0.5, 0.55],
                                 "loss": [1, 0.8], "val_loss": [1, 0.9]}, "m")
    mime, data = notebook.figure_bytes(plot)
    assert mime == "image/png" and data.startswith(b"\x89PNG") and len(data) < 80_000
    photo = figures.plot_grid(np.random.default_rng(0).integers(0, 255, (6, 64, 64, 3)),
                              [0, 1, 0, 1, 0, 1], ("cats", "dogs"))
    mime, data = notebook.figure_bytes(photo)
    assert mime == "image/webp" and data[8:12] == b"WEBP"
