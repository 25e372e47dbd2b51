"""Whole builds on a tiny generated data set: slow (kernels, TensorFlow), run by make test."""

import json
import logging
import os
import time
from pathlib import Path

import pytest

from catdog_report import site
from catdog_report.build import build
from catdog_report.config import Settings
from catdog_report.errors import BuildError, PageError

pytestmark = pytest.mark.slow
PAGES = ["index", "data", "model-one", "model-two", "model-three", "model-four", "test",
         "comparison"]


@pytest.fixture
def tiny_settings(project: Path, tiny_data: Path, mobilenet_weights: Path,
                  tmp_path: Path) -> Settings:
    return Settings(profile="quick", project_dir=project, data_dir=tiny_data,
                    weights=mobilenet_weights,
                    cache_dir=tmp_path / "cache", image_size=100, batch_size=8,
                    epochs={m: 1 for m in ("model_one", "model_two", "model_three",
                                           "model_four")})


def assert_no_local_details(site_dir: Path, settings: Settings) -> None:
    """No published file names a local path, the host or the user's home."""
    import re
    import socket
    import sys

    secrets = {str(settings.project_dir), str(settings.cache_root), str(settings.data_dir),
               sys.prefix, str(Path.home()) + "/"}
    host = socket.gethostname()
    for path in site_dir.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".md", ".txt", ".ipynb", ".json", ".xml"}:
            text = path.read_text(errors="replace")
            text = re.sub(r'"image/(png|webp|jpeg)": "[^"]*"', "", text)  # base64 payloads
            leaks = [s for s in secrets if s and s in text]
            if len(host) >= 3 and re.search(rf"(?<![\w./+-]){re.escape(host)}(?![\w./+-])",
                                            text):
                leaks.append(host)
            assert not leaks, f"{path.relative_to(site_dir)} contains {leaks}"


def _site_files(site_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(site_dir)): p.stat().st_mtime_ns for p in site_dir.rglob("*")}


def test_whole_build_then_warm_rebuild_then_failing_page(
        tiny_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    result = build(tiny_settings)
    out = tiny_settings.site_dir
    assert [p.name for p in result.pages] == PAGES and result.published
    for name in PAGES:
        html = out / ("index.html" if name == "index" else f"{name}/index.html")
        text = html.read_text()
        assert "Reproducibility stamp" in text and "Built from real data" in text, name
        assert "data:image" not in text, f"{name} inlines an image"
    assert site.broken_links(out) == []
    assert len(list(out.rglob("*.png"))) + len(list(out.rglob("*.webp"))) >= 12
    comparison = (out / "comparison" / "index.html").read_text()
    assert comparison.count("<tr>") >= 6  # header, four models, baseline
    assert (out / "model-one" / "notebooks" / "model-one.ipynb").is_file() or (
        out / "notebooks" / "model-one.ipynb").is_file()
    assert {m: r["trained"] for m, r in result.runs.items()} == {
        "model_one": True, "model_two": True, "model_three": True, "model_four": True}
    runs_json = json.loads((tiny_settings.build_dir / "runs.json").read_text())["runs"]
    assert {m: r["key"] for m, r in runs_json.items()} == {
        m: r["key"] for m, r in result.runs.items()}
    for name in ("test", "comparison"):  # pages that read every run stamp every run
        stamp_text = (out / name / "index.html").read_text().split("Reproducibility stamp")[1]
        for title in ("Model one", "Model two", "Model three", "Model four"):
            assert f"{title}</strong> (run <code>" in stamp_text, (name, title)
    assert "model_one epoch 1/1" in caplog.text  # per-epoch progress reached the build log
    order = [r.getMessage() for r in caplog.records]
    first_done = next(i for i, m in enumerate(order) if ": executed in" in m)
    assert "[2/8] data: executing" in order[:first_done]  # two kernels at once (jobs=2)
    # pages need not wait for training; a model's page waits for its run
    epoch_one = next(i for i, m in enumerate(order) if m.startswith("model_one epoch 1/1"))
    assert order.index("[1/8] index: executing") < order.index(
        "training model_one: 1 epoch on 24 images")
    assert epoch_one < order.index("[3/8] model-one: executing")
    assert_no_local_details(out, tiny_settings)

    before = _site_files(out)
    stale = [tiny_settings.cache_root / kind / "tmp" / "killed" for kind in ("runs", "pages")]
    for folder in stale:  # left by a killed build two hours ago
        folder.mkdir(parents=True)
        os.utime(folder, (time.time() - 7200, time.time() - 7200))
    caplog.clear()
    again = build(tiny_settings)
    assert not any(folder.exists() for folder in stale)
    assert all(p.cached for p in again.pages) and not again.published
    assert _site_files(out) == before
    assert not any(r.getMessage().startswith("training ") for r in caplog.records)

    page = tiny_settings.project_dir / "content" / "test.md"
    page.write_text(page.read_text().replace("st = study()", "st = study()\n1 / 0"))
    with pytest.raises(PageError, match=r"test.md failed in cell \d+: ZeroDivisionError"):
        build(tiny_settings)
    assert _site_files(out) == before  # the previous site is untouched

    keep = Settings.from_mapping({**{k: getattr(tiny_settings, k) for k in
                                     tiny_settings.__dataclass_fields__}, "keep_going": True})
    with pytest.raises(BuildError, match="1 page"):
        build(keep)
    manifest = json.loads((tiny_settings.build_dir / "manifest.json").read_text())
    assert manifest["profile"] == "quick"


def test_prose_edit_executes_nothing_a_code_edit_that_page_alone(
        tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    # the weights come from a relative CATDOG_WEIGHTS, as .ci/run passes them
    weights = tiny_settings.weights
    assert weights is not None
    monkeypatch.chdir(weights.parent)
    monkeypatch.setenv("CATDOG_WEIGHTS", weights.name)
    # and the data from a relative CATDOG_DATA_DIR, as .ci/run passes ../shared/...
    data_dir = tiny_settings.data_dir
    assert data_dir is not None
    monkeypatch.setenv("CATDOG_DATA_DIR", os.path.relpath(data_dir, weights.parent))
    tiny_settings = dataclasses.replace(tiny_settings, weights=None, data_dir=None)
    build(tiny_settings)
    page = tiny_settings.project_dir / "content" / "model-two.md"
    page.write_text(page.read_text().replace("than new ones.", "than new ones!"))
    result = build(tiny_settings)  # the code and its outputs are the same: no kernel
    assert [p.name for p in result.pages if not p.cached] == []
    html = (tiny_settings.site_dir / "model-two" / "index.html").read_text()
    assert "new ones!" in html and "Six random flips" in html  # new prose, cached outputs
    notebook = tiny_settings.site_dir / "notebooks" / "model-two.ipynb"
    assert "new ones!" in notebook.read_text()  # the download holds the new prose too
    page.write_text(page.read_text().replace("st = study()", "st = study()\nx_ = 1"))
    result = build(tiny_settings)
    assert [p.name for p in result.pages if not p.cached] == ["model-two"]
    page.write_text(page.read_text().replace("than new ones!", "than new ones, it **5%**."))
    with pytest.raises(PageError, match="the number '5%' is typed in prose"):
        build(tiny_settings)  # a cached page's new prose is linted too


def test_one_model_changed_retrains_it_alone(tiny_settings: Settings) -> None:
    import dataclasses

    build(tiny_settings)
    changed = dataclasses.replace(tiny_settings,
                                  epochs=dict(tiny_settings.epochs, model_three=2))
    result = build(changed)
    executed = {p.name for p in result.pages if not p.cached}
    trained = [m for m, r in result.runs.items() if r["trained"]]
    assert trained == ["model_three"]  # the other runs are cache hits
    # its own page, the pages reading every run, and the index (it lists every model's
    # epochs); the data page and the other models' pages stay cached
    assert executed == {"index", "model-three", "test", "comparison"}


def test_a_failing_model_becomes_one_clear_error(tiny_settings: Settings,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from catdog_report import data, execute, training
    from catdog_report.errors import TrainingError

    def broken(name: str, *args: object, **kwargs: object) -> None:
        raise Exception("URL fetch failure on https://example.invalid/w.h5: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(training, "find_or_fit", broken)
    dataset = data.scan(tiny_settings, tiny_settings.data_dir)
    with pytest.raises(TrainingError, match=r"training model_four failed: Exception: URL "
                       r"fetch failure.*pass --weights PATH or set CATDOG_WEIGHTS"):
        specs = [training.spec_for("model_four", tiny_settings)]
        execute.train(tiny_settings, dataset, specs, None)
    with pytest.raises(TrainingError, match="training model_one failed") as info:
        build(tiny_settings)
    assert "--weights" not in str(info.value)
    assert not tiny_settings.site_dir.exists()


def test_a_failing_page_stops_the_training_it_no_longer_needs(
        tiny_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    import dataclasses
    import re
    import time

    caplog.set_level(logging.INFO)
    page = tiny_settings.project_dir / "content" / "index.md"
    fail_late = r"\g<1>import time\ntime.sleep(10)  # model one is training by now\n1 / 0\n"
    page.write_text(re.sub(r"(```python[^\n]*\n)", fail_late, page.read_text(), count=1))
    slow = dataclasses.replace(tiny_settings, epochs=dict(tiny_settings.epochs, model_one=5000))
    t0 = time.perf_counter()
    with pytest.raises(PageError, match="index.md failed"):
        build(slow)
    assert time.perf_counter() - t0 < 120  # 5000 epochs would take about ten minutes
    assert "model_one epoch 1/5000" in caplog.text  # it was stopped mid-training
    entries = slow.cache_root / "runs" / "entries"
    assert not entries.exists() or not list(entries.iterdir())  # nothing half-trained kept
    assert not slow.site_dir.exists()


def test_comparison_page_with_seeds_per_model_claims_only_what_its_tests_support(
        tiny_settings: Settings) -> None:
    settings = tiny_settings.replace(seeds=2, model_seeds={"model_two": 1, "model_three": 1})
    result = build(settings)
    assert sorted(f"{m}@{e['seed']}" for m, runs in result.seeds.items() for e in runs) == [
        "model_four@0", "model_four@1", "model_one@0", "model_one@1", "model_three@0",
        "model_two@0"]
    page = (settings.build_dir / "docs" / "comparison.md").read_text()
    assert "seeds per model: Model one 2, Model two 1, Model three 1, Model four 2" in page
    assert ("Each of the 6 pairs of the 4 models is tested once, on the same 4 test photos"
            in page)
    assert "adjusted with Holm's method over those 6 tests" in page
    assert "adjusted p" in page and "pooled" not in page
    assert "seed pairs with p < 0.05" in page  # one seed pair where a model has one seed
    assert "| 1 of 1 |" in page or "| 0 of 1 |" in page
    # the walkthrough's claims describe the full profile: a quick build gives no verdict
    assert 'A preview: no verdicts' in page and "consistent with |" not in page
    reproduction = page.split("## Reproduction")[1]
    assert "| below |" not in reproduction and "| above |" not in reproduction
    assert "on 4 photos, mean of 2 seeds" in reproduction  # the true photo count, not 8

