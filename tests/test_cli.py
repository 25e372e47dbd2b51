"""The CLI turns errors into one line and an exit code; --verbose adds the traceback."""

import re
from pathlib import Path

import pytest

from catdog_report import cli
from catdog_report.errors import Interrupted
from conftest import ROOT


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def test_unknown_profile_is_one_line_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "build", "--profile", "quik")
    assert code == 2
    assert err.strip().startswith("catdog-report: error: unknown profile 'quik' (did you mean "
                                  "'quick'?); ")
    assert err.strip().endswith("study.yml declares full, quick, demo")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "model_one=0"], "epochs for model_one must be a positive integer"),
    (["--epochs", "model_for=3"], "did you mean 'model_four'"),
    (["--epochs", "model_one=three"], "'three' is not a whole number"),
    (["--strategy", "mirror"], "did you mean 'mirrored'"),
    (["--seeds", "three"], "--seeds 'three': 'three' is not a whole number"),
    (["--seeds", "2", "3"], "give one N for every model"),
    (["--seeds", "=3"], "expected N or MODEL=N"),
    (["--seeds", "model_on=3"], "did you mean 'model_one'"),
])
def test_bad_values(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, err = run(capsys, "build", *argv)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_seeds_take_a_count_and_per_model_counts() -> None:
    args = cli.parser().parse_args(["build", "--seeds", "3", "model_two=1", "model_three=1"])
    assert cli._seeds(args.seeds) == {"seeds": 3,
                                      "model_seeds": {"model_two": 1, "model_three": 1}}
    assert cli._seeds([]) == {"seeds": None, "model_seeds": {}}


def test_missing_data_folder(capsys: pytest.CaptureFixture[str], project: Path,
                             tmp_path: Path) -> None:
    code, err = run(capsys, "build", "--project", str(project), "--profile", "quick",
                    "--data-dir", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and f"--data-dir {tmp_path / 'nowhere'} does not exist" in err
    assert "Traceback" not in err and not (tmp_path / "c").exists()  # checked up front
    code, err = run(capsys, "-v", "build", "--project", str(project), "--profile", "quick",
                    "--data-dir", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and "Traceback" in err


def test_data_without_validation(capsys: pytest.CaptureFixture[str], project: Path,
                                 tiny_data: Path, tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(tiny_data / "validation")
    code, err = run(capsys, "build", "--project", str(project), "--profile", "quick",
                    "--data-dir", str(tiny_data), "--cache-dir", str(tmp_path / "c"))
    assert code == 1 and "validation is missing" in err
    assert not (project / "site").exists()


def test_check_site(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                    caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text('<img src="a.png"><a href="b/">b</a>')
    assert cli.main(["check-site", str(site)]) == 1
    assert "broken link: index.html: a.png" in caplog.text
    (site / "a.png").write_bytes(b"png")
    (site / "b").mkdir()
    (site / "b" / "index.html").write_text("ok")
    assert cli.main(["check-site", str(site)]) == 0
    code, err = run(capsys, "check-site", str(tmp_path / "none"))
    assert code == 1 and "no built site" in err


@pytest.mark.parametrize("stop", [Interrupted("a signal stopped the batch of pages"),
                                  KeyboardInterrupt()])
def test_an_interruption_is_exit_130_and_one_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        stop: KeyboardInterrupt) -> None:
    def interrupted(args: object) -> int:
        raise stop

    monkeypatch.setitem(cli.COMMANDS, "build", interrupted)
    code, err = run(capsys, "build")
    assert code == 130 == Interrupted.exit_code
    assert re.fullmatch(r"catdog-report: interrupted after \d+ s; caches and site/ are "
                        r"unchanged by the unfinished step\n", err), err


def test_serve_stops_quietly_when_interrupted(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from catdog_report import serve

    def interrupted(*args: object) -> None:
        raise Interrupted("a signal stopped the batch of pages")

    monkeypatch.setattr(serve, "serve", interrupted)
    code, err = run(capsys, "serve", "--project", str(ROOT), "--profile", "demo")
    assert code == 0 and "stopped serving" in err and "interrupted after" not in err


def test_the_console_script_exits_with_main_s_code_past_the_last_collection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.run (the entry point): main's exit code, with every object frozen out of the
    interpreter's final garbage collection (1.5 s of a cold build's exit)."""
    import gc

    monkeypatch.setattr(cli, "main", lambda argv: 3 if argv == ["check-site", "x"] else 0)
    before = gc.get_freeze_count()
    try:
        with pytest.raises(SystemExit) as exited:
            cli.run(["check-site", "x"])
        assert exited.value.code == 3
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
