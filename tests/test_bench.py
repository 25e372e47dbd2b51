"""The benchmark's own logic: log parsing, the prose edit, FLOP counting and throughput."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load("bench")  # puts bench/ on sys.path for its own modules
probe = load("probe")
harness = load("harness")
numbers = load("numbers_")
budget = load("budget")

LOG = """\
data: x (local folder (--data-dir)); train 40, validation 16, test 4 images; 0 skipped
model_two: loaded from the run cache (b3d5af49af39)
training model_three: 3 epochs on 40 images
[1/3] index: cached
[2/3] model-two: executing
[3/3] model-three: executing
    model_two: loaded from the run cache (b3d5af49af39)
[2/3] model-two: executed in 5.9 s
    model_three: trained by this build (0123456789ab)
[3/3] model-three: executed in 1.0 s
built 3 pages in 17.0 s (2 executed: model-two, model-three); site published
BENCH-MODULES {"tensorflow": false, "keras": false, "mkdocs": true}
"""


def test_parse_build_log():
    parsed = harness.parse_build_log(LOG)
    assert parsed["pages_executed"] == ["model-two", "model-three"]
    assert parsed["pages_cached"] == ["index"]
    assert parsed["models_trained"] == ["model_three"]
    assert parsed["models_loaded"] == ["model_two"]
    assert parsed["build_process_modules"] == {"tensorflow": False, "keras": False,
                                               "mkdocs": True}


def test_parse_build_log_without_marker():
    parsed = harness.parse_build_log("catdog-report: error: something\n")
    assert parsed["pages_executed"] == [] and parsed["build_process_modules"] is None


def test_a_cold_build_timeline_from_its_stamped_log_lines():
    stamped = [(2.1, "data: x; train 40"), (2.4, "may need training (no cached run): a@0"),
               (6.0, "[1/3] index: executing"), (6.5, "training a: 2 epochs on 40 images"),
               (8.0, "[1/3] index: executed in 2.0 s"), (15.0, "a: trained in 8.5 s (0123)"),
               (15.1, "[2/3] a-page: executing"), (15.2, "training b: 1 epoch on 40 images"),
               (18.0, "[2/3] a-page: executed in 2.9 s"), (25.0, "b: trained in 9.8 s (4567)"),
               (25.1, "[3/3] b-page: executing"), (28.0, "[3/3] b-page: executed in 2.9 s"),
               (28.1, "building the site with mkdocs into site.tmp"),
               (28.9, "site: built with mkdocs in 0.8 s")]
    events = harness.timeline(stamped, 29.5)
    assert [e["event"] for e in events][:4] == ["process starts", "data scanned", "planned",
                                               "page starts index"]
    stages = {what: round(b - a, 1) for a, b, what in numbers.stages(events)}
    assert stages["start-up, imports and the data scan"] == 2.1
    assert stages["TensorFlow, the builders, the decoded images"] == 4.1
    assert stages["fit b (and its test scores, maps)"] == 9.8
    assert stages["page kernel a-page"] == 2.9
    assert stages["pages still running after the last fit"] == 3.0
    assert stages["docs and MkDocs"] == 0.9 and stages["exit"] == 0.6
    assert len(numbers.timeline_lines(events)) == len(stages)


def test_the_budget_says_its_plan_and_skips_what_would_end_past_it(capsys, monkeypatch):
    import time

    now = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    b = budget.Budget(30 * 60, 1000.0)
    plan = b.plan(budget.SECTIONS, 3, "quick")
    assert "ends within 30 min" in plan and "3 cold pair(s)" in plan
    assert b.allows("probe", 150) and b.skipped == []
    now[0] += 25 * 60  # 25 minutes gone: 5 left, 1 of them kept for the report
    assert not b.allows("parallel", 5 * 60)
    assert b.skipped and "parallel: skipped" in b.skipped[0] and "--budget" in b.skipped[0]
    pairs = [{"records": [{"train_seconds": 10.0}, {"train_seconds": 10.0}]}]  # 20 s a fit
    assert budget.precision_seconds(3, 20) == 2 * 20 + 3 * 20 * budget.BF16_FACTOR + 60
    assert b.seeds_for_precision(3, pairs) == 2  # 4 min left, less 70 s kept for parallel
    assert "2 seed(s) per model instead of 3" in b.skipped[-1]
    now[0] += 4 * 60
    assert b.seeds_for_precision(3, pairs) == 0 and "precision: skipped" in b.skipped[-1]
    assert "skipped" in capsys.readouterr().out  # said as it happens


def test_bf16_is_measured_only_where_the_hardware_does_it_at_the_probe_s_cost(tmp_path):
    cpuinfo, gpus = tmp_path / "cpuinfo", tmp_path / "gpus"
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert budget.bf16_hardware(cpuinfo, gpus) is None  # AVX-512 without its bf16 part
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert budget.bf16_hardware(cpuinfo, gpus) == "CPU avx512_bf16, amx_bf16"
    cpuinfo.write_text("flags\t\t: fpu\n")
    (gpus / "0000:01:00.0").mkdir(parents=True)
    assert budget.bf16_hardware(cpuinfo, gpus) == "an NVIDIA GPU"
    probe = {"train_step": [
        {"model": "m1", "variant": "default", "step_seconds": 0.6},
        {"model": "m1", "variant": "bf16", "step_seconds": 4.2},
        {"model": "m2", "variant": "default", "step_seconds": 0.5},
        {"model": "m2", "variant": "bf16", "step_seconds": 2.5},
        {"model": "m2", "variant": "xla", "step_seconds": 0.1}]}
    assert budget.bf16_factor(probe) == pytest.approx(6.0)  # the median of 7x and 5x
    assert budget.bf16_factor(None) == budget.BF16_FACTOR
    assert budget.precision_seconds(1, 20, 6.0) == 20 * 6.0 + 60
    plan = budget.Budget(30 * 60, 0.0).plan(budget.SECTIONS, 3, "quick", bf16=False)
    assert "bf16 skipped (no bf16 arithmetic here)" in plan and "bf16, 3 seeds" not in plan


def test_precision_is_skipped_and_said_where_bf16_is_emulated(capsys):
    args = bench.parse_args(["--only", "precision"])
    b = budget.Budget(30 * 60, 0.0)
    assert not bench.precision_wanted(args, {"bf16_hardware": None}, b)
    assert "no bf16 arithmetic" in b.skipped[-1] and "--bf16-emulated" in capsys.readouterr().out
    assert bench.precision_wanted(args, {"bf16_hardware": "CPU amx_bf16"}, b)
    args = bench.parse_args(["--only", "precision", "--bf16-emulated"])
    assert bench.precision_wanted(args, {"bf16_hardware": None}, b)


def test_edit_prose_changes_one_prose_sentence(tmp_path):
    page = tmp_path / "model-two.md"
    shutil.copy(ROOT / "content" / "model-two.md", page)
    before = page.read_text()
    harness.edit_prose(page)
    after = page.read_text()
    assert after != before
    code = [b for b in before.split("```")[1::2]]
    assert code == [b for b in after.split("```")[1::2]]  # code cells untouched


def test_edit_prose_fallback_skips_front_matter_and_code(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("---\njupyter: {}\n---\n\n# Title\n\n```python\nx = 1\n```\n\nSome prose.\n")
    harness.edit_prose(page)
    text = page.read_text()
    assert "Some prose. The benchmark edited this paragraph." in text
    assert "x = 1\n" in text and text.startswith("---\njupyter: {}\n---\n")


def test_throughput_counts_train_at_step_cost_and_validation_forward():
    flops = {"train_step": 3e9, "forward": 1e9}
    rec = {"images": {"train": 10, "validation": 4, "test": 1}}
    # 2 epochs * (10 * 3 + 4 * 1) GFLOP / 17 s = 4 GFLOP/s
    assert numbers.throughput(flops, rec, 17.0, 2) == pytest.approx(4.0)


def test_pages_text():
    assert numbers.pages_text([], 8) == "none"
    assert numbers.pages_text(["a", "b"], 2) == "all 2"
    assert numbers.pages_text(["model-two"], 8) == "model-two"


def test_fresh_project_copies_content_and_config(tmp_path):
    project = harness.fresh_project(tmp_path / "p")
    assert (project / "mkdocs.yml").is_file() and (project / "study.yml").is_file()
    assert (project / "content" / "model-two.md").is_file()
    assert not (project / "site").exists()


@pytest.mark.slow
def test_model_one_flops_match_hand_count():
    from catdog_report import models
    from catdog_report.config import Settings

    f = probe.model_flops(models.build("model_one", Settings(project_dir=ROOT)))
    conv = (2 * 158 * 158 * 3 * 3 * 3 * 32 + 2 * 77 * 77 * 3 * 3 * 32 * 64
            + 2 * 36 * 36 * 3 * 3 * 64 * 64)
    dense = 2 * 18 * 18 * 64 * 128 + 2 * 128 * 2
    assert f["forward"] == f["forward_trainable"] == conv + dense
    assert f["train_step"] == 3 * f["forward"]


@pytest.mark.slow
def test_model_four_base_counts_as_frozen():
    from catdog_report import models
    from catdog_report.config import Settings

    f = probe.model_flops(models.build("model_four", Settings(project_dir=ROOT), None))
    assert f["forward_frozen"] > 5 * f["forward_trainable"] > 0
    assert f["train_step"] == 3 * f["forward_trainable"] + f["forward_frozen"]
    assert any(layer["layer"].startswith("mobilenetv2") and layer["frozen"]
               for layer in f["layers"])
