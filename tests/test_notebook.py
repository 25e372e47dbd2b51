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


class ExplainStudy(FakeStudy):
    def title(self, name: str) -> str:
        return {"model_one": "Model one", "model_two": "Model two"}[name]


def _hot(corner: str, n: int) -> np.ndarray:
    maps = np.zeros((n, 12, 12), np.float32)
    rows, cols = {"top left": (slice(0, 3), slice(0, 3)),
                  "centre": (slice(5, 7), slice(5, 7))}[corner]
    maps[:, rows, cols] = 1.0
    return maps


def _fake_maps(monkeypatch: pytest.MonkeyPatch, maps: dict[str, dict[str, str]]) -> None:
    """Stand in for running the model: per model, map label → where its heat is."""
    def fake(st: Any, run: Run, rows: pd.DataFrame) -> Any:
        n = len(rows)
        return notebook.xai.Explanation(
            files=list(rows["file"]), true=list(rows["true"]),
            predicted=list(rows["predicted"]), confidence=list(rows["probability"]),
            maps={label: _hot(c, n) for label, c in maps[run.name].items()},
            note="" if maps[run.name] else "it has no convolution layer")
    monkeypatch.setattr(notebook, "_maps_of", fake)


def test_explain_shows_maps_with_computed_alt_text_and_prose(
        shown: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_maps(monkeypatch, {"model_one": {"last convolution (conv2d_1, 2x2)": "top left",
                                           "last block of base (Conv_1, 5x5)": "centre"}})
    run = _run([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.95, 0.05]], [0, 0, 1, 1])
    notebook.show_explanation(ExplainStudy(), run, wrong=1, right=1)  # type: ignore[arg-type]
    (fig, caption), prose = shown
    alt = figures.alt_text(fig)
    assert alt.startswith("Grad-CAM maps of Model one on 2 test photos, 1 of them misclassified")
    assert ("3.jpg, a dogs photo predicted cats (95%, wrong): the heat of last convolution "
            "(conv2d_1, 2x2) lies mostly in the top left (100%), of last block of base "
            "(Conv_1, 5x5) mostly in the centre (100%)") in alt
    assert "0.jpg, a cats photo predicted cats (90%, right)" in alt
    assert len([ax for ax in fig.axes if len(ax.get_images()) == 2]) == 4  # 2 photos x 2 maps
    assert "on 1 of its mistakes" in caption and "1 correct photos" in caption
    assert prose.startswith("Over 4 test photos (2 of its mistakes and 2 correct photos)")
    assert r"last convolution \(conv2d\_1, 2x2\) puts on average **0%** of its heat" in prose
    assert r"\(Conv\_1, 5x5\) puts on average **100%**" in prose


def test_explain_says_when_a_model_has_no_convolution(
        shown: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_maps(monkeypatch, {"model_one": {}})
    notebook.show_explanation(ExplainStudy(), _run([[0.9, 0.1], [0.4, 0.6]], [0, 0]))  # type: ignore[arg-type]
    assert shown == ["Model one has no class-activation map: it has no convolution layer."]


def test_compared_explanations_show_the_same_photos_for_every_model(
        shown: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_maps(monkeypatch, {"model_one": {"last convolution (c1, 2x2)": "centre"},
                             "model_two": {"last convolution (c2, 2x2)": "top left"}})
    one = _run([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.95, 0.05]], [0, 0, 1, 1])
    two = Run(dict(one.record, model="model_two"), None, True)  # type: ignore[arg-type]
    notebook.show_compared_explanations(ExplainStudy(), [one, two], 2, 3)  # type: ignore[arg-type]
    (fig, _), table, prose = shown
    assert len([ax for ax in fig.axes if len(ax.get_images()) == 2]) == 4  # 2 photos x 2 models
    assert "3.jpg, a dogs photo: Model one: last convolution (c1, 2x2) predicted cats (95%), " \
           "heat mostly in the centre (100%)" in figures.alt_text(fig)
    assert r"| Model one, last convolution \(c1, 2x2\) | 3 | 100% |" in table
    assert prose.startswith("On these photos the map that looks the most at the centre is "
                            r"Model one, last convolution \(c1, 2x2\) (**100%**")
    assert "1 of the 2 maps put more heat there" in prose


def test_explain_names_photos_that_are_not_test_photos(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_maps(monkeypatch, {"model_one": {}})
    with pytest.raises(notebook.ConfigError, match="nope.jpg is not among the test photos"):
        notebook.show_explanation(ExplainStudy(), _run([[0.9, 0.1]], [0]), ["nope.jpg"])  # type: ignore[arg-type]
