"""What a user of the generator can do, end to end on tiny generated images (slow).

1. Add a model: a builder, an entry in study.yml, a page and a nav line; the build trains it
   alone and it appears everywhere. 2. Fine-tune: a model that starts_from another; its
   parent's epochs retrain both, its own only itself. 3. Remove a model. 4. A second study
   with other classes in the same engine.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from catdog_report.build import BuildResult, build
from catdog_report.config import Settings
from conftest import ROOT, make_images

pytestmark = pytest.mark.slow

FINE_TUNE = '''

def model_five(parent):
    """Model four with the top of its MobileNetV2 base fine-tuned at a lower learning rate."""
    base = next(layer for layer in parent.layers if layer.name.startswith("mobilenetv2"))
    base.trainable = True
    for layer in base.layers[:100]:
        layer.trainable = False
    parent.compile(optimizer=keras.optimizers.Adam(1e-5),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    return parent
'''

HEADER = '''---
jupyter:
  kernelspec:
    display_name: Python 3
    language: python
    name: python3
---
'''  # a jupytext page's front matter

PAGE = HEADER + '''
# {title}

{prose}

```python
from catdog_report import figures
from catdog_report.notebook import say, show, show_code, show_evaluation, study, test_score

st = study()
show_code("{name}")
run = st.fit("{name}")
show(figures.plot_history(run.history, st.title("{name}")), caption="history")
show_evaluation(st, run, st.title("{name}"))
say(test_score(run))
st.explain(run)
```
'''


DATA_PAGE = HEADER + '''
# The data

```python
from catdog_report import figures, tables
from catdog_report.notebook import show, show_table, study

st = study()
show_table(tables.class_counts(st.dataset), caption="Images per class in each split")
x, y = st.arrays["train"]
rows = st.declaration.data.grid_rows
show(figures.plot_grid(x, y, st.dataset.class_names, rows), caption="Training images")
```
'''


def _nav(project: Path, pages: list[tuple[str, str]]) -> None:
    config = (project / "mkdocs.yml").read_text()
    nav = "nav:\n" + "".join(f"  - {title}: {page}.md\n" for title, page in pages)
    (project / "mkdocs.yml").write_text(re.sub(r"^nav:\n(?:  - .*\n)+", nav, config,
                                               flags=re.M))


def _study(project: Path, edit: callable) -> None:  # type: ignore[valid-type]
    path = project / "study.yml"
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _article(settings: Settings, page: str) -> str:
    """The page's content (not the theme's head, nav or footer)."""
    html = _html(settings, page)
    return html[html.index("<article"):html.index("</article>")]


def _trained(result: BuildResult) -> list[str]:
    return sorted(m for m, runs in result.seeds.items() if any(r["trained"] for r in runs))


def _html(settings: Settings, page: str) -> str:
    return (settings.site_dir / ("index.html" if page == "index" else f"{page}/index.html")
            ).read_text()


@pytest.fixture
def two_model_project(tmp_path: Path, mobilenet_weights: Path) -> Settings:
    """The project's own pages and study cut to models one and four (tiny, one epoch)."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "content", project / "content",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "study.yml"):
        shutil.copy(ROOT / name, project / name)
    for gone in ("data", "model-two", "model-three"):
        (project / "content" / f"{gone}.md").unlink()
    _nav(project, [("Introduction", "index"), ("Model one", "model-one"),
                   ("Model four", "model-four"), ("Score on test data", "test"),
                   ("Model comparison", "comparison")])

    def keep_two(raw: dict) -> None:
        raw["models"] = {m: raw["models"][m] for m in ("model_one", "model_four")}
        for spec in raw["models"].values():
            spec["epochs"]["quick"] = 1
        raw["claims"] = [c for c in raw["claims"] if c["model"] in raw["models"]]

    _study(project, keep_two)
    return Settings(profile="quick", project_dir=project,
                    data_dir=make_images(tmp_path / "cats_and_dogs_filtered"),
                    weights=mobilenet_weights, cache_dir=tmp_path / "cache", image_size=100,
                    batch_size=8)


def test_add_a_fine_tuned_model_then_change_epochs(two_model_project: Settings) -> None:
    s = two_model_project
    assert _trained(build(s)) == ["model_four", "model_one"]
    # Story 1 and 2: a builder, an entry, a page, a nav line (as the README says)
    with open(s.project_dir / "content" / "models.py", "a") as fh:
        fh.write(FINE_TUNE)
    _study(s.project_dir, lambda raw: raw["models"].update({"model_five": {
        "title": "Model five", "builder": "content/models.py:model_five",
        "description": "model four fine-tuned", "epochs": {"full": 10, "quick": 1, "demo": 2},
        "starts_from": "model_four", "colour": "#9467bd"}}))
    (s.project_dir / "content" / "model-five.md").write_text(PAGE.format(
        title="Model five", name="model_five", prose="Model four, fine-tuned."))
    _nav(s.project_dir, [("Introduction", "index"), ("Model one", "model-one"),
                         ("Model four", "model-four"), ("Model five", "model-five"),
                         ("Score on test data", "test"), ("Model comparison", "comparison")])
    result = build(s)
    assert _trained(result) == ["model_five"]  # the others are cache hits
    # its page and those reading every model or the nav; model one's and four's are kept
    assert {p.name for p in result.pages if not p.cached} == {"index", "model-five", "test",
                                                              "comparison"}
    five = result.runs["model_five"]
    assert five["parent"] == result.runs["model_four"]["key"]
    page = _article(s, "model-five")
    assert "Model four, fine-tuned." in page and "model_five" in page  # its code is shown
    assert "Model five</strong></a>: model four fine-tuned" in _html(s, "index")  # chapters
    assert "Model five" in _html(s, "test")
    comparison = _html(s, "comparison")
    assert comparison.count('href="../model-five/#evaluation-on-the-test-split"') == 2
    assert re.search(r"Bar chart of test accuracy per model[^\"]*Model five", comparison)
    assert "Model five</strong> (run <code>" in comparison  # in the stamp
    # Story 2: the parent's epochs retrain both; the child's retrain it alone
    assert _trained(build(s.replace(epochs={"model_four": 2}))) == ["model_five", "model_four"]
    result = build(s.replace(epochs={"model_four": 2, "model_five": 2}))
    assert _trained(result) == ["model_five"]
    assert {p.name for p in result.pages if not p.cached} == {"index", "model-five", "test",
                                                              "comparison"}


def test_remove_a_model(two_model_project: Settings) -> None:
    s = two_model_project
    (s.project_dir / "content" / "model-one.md").unlink()
    _nav(s.project_dir, [("Introduction", "index"), ("Model four", "model-four"),
                         ("Score on test data", "test"), ("Model comparison", "comparison")])

    def drop(raw: dict) -> None:
        del raw["models"]["model_one"]
        raw["claims"] = [c for c in raw["claims"] if c["model"] != "model_one"]

    _study(s.project_dir, drop)
    result = build(s)
    assert [p.name for p in result.pages] == ["index", "model-four", "test", "comparison"]
    assert _trained(result) == ["model_four"]
    comparison = _html(s, "comparison")
    assert "Model four" in comparison and "Model one" not in comparison


def test_a_second_study_with_other_classes(tmp_path: Path) -> None:
    project = tmp_path / "shapes"
    (project / "content").mkdir(parents=True)
    (project / "content" / "nets.py").write_text(
        "import keras\n\n\ndef flat(image_size):\n"
        "    model = keras.Sequential([keras.Input((image_size, image_size, 3)),\n"
        "                              keras.layers.Rescaling(1 / 255),\n"
        "                              keras.layers.Flatten(), keras.layers.Dense(2)])\n"
        "    model.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy("
        "from_logits=True), metrics=['accuracy'])\n    return model\n\n\n"
        "def deeper(image_size):\n"
        "    model = keras.Sequential([keras.Input((image_size, image_size, 3)),\n"
        "                              keras.layers.Rescaling(1 / 255),\n"
        "                              keras.layers.Conv2D(4, 3, activation='relu'),\n"
        "                              keras.layers.Flatten(), keras.layers.Dense(2)])\n"
        "    model.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy("
        "from_logits=True), metrics=['accuracy'])\n    return model\n")
    (project / "study.yml").write_text(yaml.safe_dump({
        "title": "Circles or squares",
        "data": {"name": "shapes", "classes": ["circles", "squares"],
                 "grid_rows": ["squares", "circles"]},
        "profiles": {"quick": {"description": "tiny", "train_per_class": 8}},
        "models": {"flat": {"title": "Flat", "builder": "content/nets.py:flat",
                            "epochs": {"quick": 2}},
                   "deeper": {"title": "Deeper", "builder": "content/nets.py:deeper",
                              "epochs": {"quick": 2}, "colour": "#123456"}}}))
    for page in ("test", "comparison"):  # the project's generic pages, unchanged
        shutil.copy(ROOT / "content" / f"{page}.md", project / "content" / f"{page}.md")
    (project / "content" / "data.md").write_text(DATA_PAGE)
    for name, title in (("flat", "Flat"), ("deeper", "Deeper")):
        (project / "content" / f"{name}.md").write_text(PAGE.format(
            title=title, name=name, prose="A small network."))
    config = (ROOT / "mkdocs.yml").read_text().replace(
        "site_name: Four models that classify cats and dogs photos", "site_name: Shapes")
    (project / "mkdocs.yml").write_text(config)
    _nav(project, [("The data", "data"), ("Flat", "flat"), ("Deeper", "deeper"),
                   ("Test", "test"), ("Comparison", "comparison")])
    s = Settings(profile="quick", project_dir=project, cache_dir=tmp_path / "cache",
                 data_dir=make_images(tmp_path / "shapes-data", classes=("circles", "squares")),
                 image_size=32, batch_size=8)
    result = build(s)
    assert _trained(result) == ["deeper", "flat"] and result.published
    data_page = _article(s, "data")
    assert "circles" in data_page and "squares" in data_page and "cats" not in data_page
    assert "squares on the top row" in data_page
    comparison = _article(s, "comparison")
    assert "Flat" in comparison and "Deeper" in comparison and "Model one" not in comparison
    assert "The study declares no claims to check." in comparison
    # Grad-CAM: found by layer type in a study that names its layers as it likes
    assert "Flat has no class-activation map: it has no convolution layer." in _article(s, "flat")
    assert "Grad-CAM maps of Deeper on" in _article(s, "deeper")
    assert "No map for Flat (it has no convolution layer)." in comparison
    assert "the map that looks the most at the centre is Deeper, last convolution (conv2d" in (
        comparison)
