from catdog_report import stamp
from catdog_report.config import Settings
from catdog_report.pages import Page
from conftest import ROOT

RUNS = [{"model": "model_one", "title": "Model one", "key": "abcdef1234567890",
         "trained": False, "epochs": 20, "seed": 0, "trained_at": "2026-11-28T19:00:00+00:00",
         "train_seconds": 412.3, "gpus": []},
        {"model": "model_four", "title": "Model four", "key": "0123456789abcdef",
         "trained": True, "epochs": 10, "seed": 0, "trained_at": "2026-11-28T19:10:00+00:00",
         "train_seconds": 95.0, "gpus": ["/physical_device:GPU:0"], "threads": 2}]


def test_stamp_has_every_field() -> None:
    page = Page("model-one", "Model one", "", {}, "", RUNS, 12.5, "2026-11-28 19:20:00 UTC")
    state = {"commit": "1234567890ab (dirty)", "versions": stamp.package_versions(),
             "manifest": "f" * 64, "seed": 0, "profile": "quick", "cpu": stamp.cpu_model()}
    text = stamp.stamp(page, state, RUNS)
    assert text.startswith('??? note "Reproducibility stamp"')
    versions = state["versions"]
    packages = "- **Packages:** " + ", ".join(f"{k} {v}" for k, v in versions.items())
    assert set(versions) == {"Python", "TensorFlow", "Keras", "NumPy"}
    for needle in ("1234567890ab (dirty)", packages, f"TensorFlow {versions['TensorFlow']}",
                   f"Keras {versions['Keras']}", f"NumPy {versions['NumPy']}",
                   "f" * 16, "seed** 0", "`quick`", "cores", "GPU: /physical_device:GPU:0",
                   "Model one** (run `abcdef123456`, 20 epochs, seed 0): loaded from the run "
                   "cache", "Model four** (run `0123456789ab`, 10 epochs, seed 0): trained by "
                   "this build",
                   "2026-11-28T19:10:00+00:00 in 95 s (2 TensorFlow threads)",
                   "2026-11-28T19:00:00+00:00 in 412 s\n",  # an older record: no thread count
                   "2026-11-28 19:20:00 UTC in 12.5 s"):
        assert needle in text, needle
    assert all(line.startswith("    ") for line in text.splitlines()[1:])


def test_banner_never_passes_synthetic_data_off_as_real() -> None:
    s = Settings(project_dir=ROOT)
    demo, full = s.study.profile("demo"), s.study.profile("full")
    fake = stamp.banner(s.study, "generated offline by content/demo_drawings.py:draw", demo,
                        "no ImageNet weights: base is untrained")
    assert fake.startswith("!!! warning") and "synthetic" in fake and "not the real study" in fake
    assert "drawings** of cats and dogs (generated offline by content/demo" in fake
    real = stamp.banner(s.study, "local folder", full, "ImageNet weights from a file")
    assert real.startswith("!!! info") and "real `cats_and_dogs_filtered` photos" in real
    assert "synthetic" not in real and "Model four's base: ImageNet weights from a file" in real


def test_git_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert stamp.git_state(tmp_path) == "not a git checkout"
    assert len(stamp.git_state(stamp.Path(__file__).parent).split()[0]) == 12


def test_download_links() -> None:
    links = stamp.downloads("data")
    assert "notebooks/data.ipynb" in links and "sources/data.md.txt" in links


def test_stamp_says_where_each_run_came_from_and_why_not_the_freeze() -> None:
    page = Page("model-one", "Model one", "", {}, "", RUNS, 1.0, "2026-11-28 19:20:00 UTC")
    state = {"commit": "1234567890ab", "versions": {}, "manifest": "f" * 64, "seed": 0,
             "profile": "full", "cpu": "cpu"}
    runs = [RUNS[0] | {"source": "freeze", "weights": False},
            RUNS[0] | {"source": "remote", "model": "m2", "title": "M2"},
            RUNS[1] | {"source": "trained", "note": "its frozen run was made with other "
                       "inputs: epochs 10 → 12"}]
    text = stamp.stamp(page, state, runs)
    assert ("Model one** (run `abcdef123456`, 20 epochs, seed 0): loaded from the committed "
            "freeze (frozen/) without its weights; trained 2026-11-28T19:00:00+00:00") in text
    assert "M2** (run `abcdef123456`, 20 epochs, seed 0): pulled from the remote run cache" in text
    assert ("trained by this build; trained 2026-11-28T19:10:00+00:00 in 95 s (2 TensorFlow "
            "threads) (its frozen run was made with other inputs: epochs 10 → 12)") in text
