"""Progress events: carried by log records, and the tracker's counts and estimates."""

import logging

import pytest

from catdog_report import progress
from catdog_report.progress import (
    BatchDone,
    BuildPlanned,
    EpochDone,
    PageDone,
    PageStarted,
    RunDone,
    RunPlan,
    RunStarted,
    Tracker,
    duration,
)


def plan(prior: float | None = None) -> BuildPlanned:
    return BuildPlanned((RunPlan("one@0", "one", 0, 2, 10, False, prior),
                         RunPlan("two@0", "two", 0, 3, 10, False, None),
                         RunPlan("four@0", "four", 0, 1, 10, True)), ("index", "one"))


def test_an_event_rides_on_a_log_record(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("catdog_report.test")
    caplog.set_level(progress.TICK, logger="catdog_report")
    event = RunDone("one@0", True, 3.0)
    progress.emit(log, event, "%s: trained", "one")
    progress.emit(log, BatchDone("one@0", 1, 2, 1, 10), "tick", level=progress.TICK)
    first, tick = caplog.records
    assert first.getMessage() == "one: trained" and progress.event_of(first) == event
    assert tick.levelno < logging.DEBUG  # -v prints no line per batch
    assert progress.event_of(logging.makeLogRecord({"msg": "plain"})) is None


def test_no_record_is_made_when_nobody_listens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="catdog_report")
    progress.emit(logging.getLogger("catdog_report.test"), BatchDone("a@0", 1, 1, 1, 1),
                  "tick", level=progress.TICK)
    assert not caplog.records


def test_counts_follow_the_runs() -> None:
    t = Tracker()
    t.feed(plan(), now=0)
    assert t.counts() == {"trained": 0, "loaded": 0, "to_train": 2, "cached": 1, "total": 3}
    t.feed(RunDone("four@0", False, 0.0), now=1)
    t.feed(RunStarted("one@0", 2, 10), now=1)
    assert t.active() == ["one@0"]
    t.feed(RunDone("one@0", True, 9.0), now=10)
    assert t.counts() == {"trained": 1, "loaded": 1, "to_train": 1, "cached": 0, "total": 3}
    t.feed(PageStarted("index"), now=11)
    assert list(t.pages_running) == ["index"]
    t.feed(PageDone("index", False, 2.0), now=13)
    assert not t.pages_running and list(t.pages_done) == ["index"]


def test_the_estimate_comes_from_the_measured_steps() -> None:
    t = Tracker()
    t.feed(plan(), now=0)
    assert t.training_left(0) is None  # nothing measured, no earlier build: no guess
    t.feed(RunStarted("one@0", 2, 10), now=0)
    for batch in range(1, 6):  # 2 s per step in the first epoch
        t.feed(BatchDone("one@0", 1, 2, batch, 10), now=2.0 * batch)
    assert t.step_seconds("one@0", 10) == pytest.approx(2.0)
    assert t.epoch_left("one@0", 10) == pytest.approx(10.0)  # 5 steps left
    assert t.run_left("one@0", 10) == pytest.approx(30.0)  # 15 steps left
    # model two has no measure of its own: it is guessed at the rate measured so far
    assert t.training_left(10) == pytest.approx(30.0 + 30 * 2.0)
    t.feed(EpochDone("one@0", 1, 2, 30.0), now=30)  # validation made the epoch 30 s: 3 s/step
    assert t.step_seconds("one@0", 30) == pytest.approx(3.0)
    assert t.run_left("one@0", 30) == pytest.approx(30.0)


def test_an_earlier_builds_step_time_is_used_before_any_measure() -> None:
    t = Tracker()
    t.feed(plan(prior=1.5), now=0)
    assert t.run_left("one@0", 0) == pytest.approx(2 * 10 * 1.5)
    assert t.training_left(0) is None  # model two still has no measure


def test_a_new_plan_starts_over() -> None:
    t = Tracker()
    t.feed(plan(), now=0)
    t.feed(RunDone("one@0", True, 1.0), now=1)
    t.feed(BuildPlanned((), ("index",)), now=2)
    assert t.counts()["total"] == 0 and t.pages == ["index"]


@pytest.mark.parametrize("seconds, text", [(None, "?"), (4.4, "4 s"), (65, "1 min 05 s"),
                                           (3725, "1 h 02 min")])
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_the_first_batch_which_traces_the_graph_is_left_out_of_the_rate() -> None:
    t = Tracker()
    t.feed(plan(), now=0)
    t.feed(RunStarted("one@0", 2, 10), now=0)
    t.feed(BatchDone("one@0", 1, 2, 1, 10), now=20.0)  # tracing: 20 s
    assert t.step_seconds("one@0", 20.0) == pytest.approx(20.0)  # all there is so far
    assert not t.settled("one@0")  # the display says it is measuring
    for batch in range(2, 5):
        t.feed(BatchDone("one@0", 1, 2, batch, 10), now=20.0 + 2 * (batch - 1))
    assert t.step_seconds("one@0", 26.0) == pytest.approx(2.0)
    assert t.settled("one@0")


def test_the_build_estimate_adds_a_page_after_the_training() -> None:
    t = Tracker()
    t.feed(plan(prior=1.0), now=0)
    t.feed(RunDone("two@0", True, 5.0), now=0)  # two and four are ready: one is left
    t.feed(PageDone("index", False, 8.0), now=0)
    assert t.training_left(0) == pytest.approx(20.0)
    assert t.build_left(0) == pytest.approx(28.0)  # and page "one", as long as index took
    t.feed(PageDone("one", True, 0.0), now=0)
    assert t.build_left(0) == pytest.approx(20.0)


def test_the_plan_event_names_every_run_of_the_plan_with_seeds_per_model(
        caplog: pytest.LogCaptureFixture, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from catdog_report import build, data, training
    from catdog_report.config import Settings
    from catdog_report.plan import Needs, make_plan
    from conftest import make_images
    from test_study import write_study

    study_file = write_study(tmp_path)
    images = make_images(tmp_path / "shapes", classes=("circles", "squares"))
    settings = Settings(profile="quick", project_dir=tmp_path, study_file=study_file,
                        data_dir=images, cache_dir=tmp_path / "cache", image_size=32,
                        seeds=2, model_seeds={"tuned": 1})
    reads_all = ("comparison", tmp_path / "comparison.md", "", Needs((), True))
    plan = make_plan(settings.study, [reads_all], {}, {},
                     training.run_specs_for(settings, None))
    caplog.set_level(logging.DEBUG, logger="catdog_report")
    build.announce(settings, data.scan(settings, images), plan)
    event = next(progress.event_of(r) for r in caplog.records if progress.event_of(r))
    assert [r.run for r in event.runs] == plan.ids == ["small@0", "small@1", "tuned@0"]
