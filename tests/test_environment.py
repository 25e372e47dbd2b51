"""environment: the one reader of the CATDOG_* variables (typed, checked, unknown names
warned about), and the precedence option > variable > default."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from catdog_report import cli, config, environment
from catdog_report.config import Settings
from catdog_report.environment import Environment, read
from catdog_report.errors import ConfigError

SRC = Path(environment.__file__).parent


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "_WARNED", set())


def test_every_variable_is_read_typed_and_frozen() -> None:
    env = read({"CATDOG_PROFILE": "quick", "CATDOG_DATA_DIR": "rel/data",
                "CATDOG_WEIGHTS": "w.h5", "CATDOG_CACHE_DIR": "/c", "CATDOG_STRATEGY": "none",
                "CATDOG_ENGINE": "zensical", "CATDOG_JOBS": "3", "CATDOG_WORKERS": " 4 ",
                "CATDOG_PROGRESS": "plain", "CATDOG_SETTINGS": '{"profile": "demo"}',
                "CATDOG_BUILD_DIR": "/b", "HOME": "/home/x"})
    assert env == Environment(profile="quick", data_dir=Path("rel/data"), weights=Path("w.h5"),
                              cache_dir=Path("/c"), strategy="none", engine="zensical", jobs=3,
                              workers=4, progress="plain", settings={"profile": "demo"},
                              build_dir=Path("/b"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.jobs = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        env.settings["profile"] = "full"  # type: ignore[index]
    assert read({}) == Environment()
    assert read({"CATDOG_JOBS": "", "CATDOG_DATA_DIR": " "}) == Environment()  # empty: unset


def test_every_field_is_its_variable() -> None:
    assert environment.variable("data_dir") == "CATDOG_DATA_DIR"
    assert environment.ENV_SETTINGS == "CATDOG_SETTINGS"
    assert environment.ENV_BUILD == "CATDOG_BUILD_DIR"
    assert set(environment.VARIABLES) == {f.name for f in dataclasses.fields(Environment)} - {
        "unknown"}


@pytest.mark.parametrize("name, value, message", [
    ("CATDOG_WORKERS", "two", "CATDOG_WORKERS='two' is not a positive whole number; set "
     "CATDOG_WORKERS to the number of worker processes that train runs at once, such as 2, "
     "or unset it"),
    ("CATDOG_JOBS", "0", "CATDOG_JOBS='0' is not a positive whole number; set CATDOG_JOBS to "
     "the number of pages to execute at once, such as 2, or unset it"),
    ("CATDOG_JOBS", "-1", "CATDOG_JOBS='-1' is not a positive whole number"),
    ("CATDOG_JOBS", "2.5", "CATDOG_JOBS='2.5' is not a positive whole number"),
    ("CATDOG_JOBS", "²", "CATDOG_JOBS='²' is not a positive whole number"),
    ("CATDOG_ENGINE", "mkdoc", "CATDOG_ENGINE='mkdoc' is not one of mkdocs, zensical (did you "
     "mean 'mkdocs'?); set CATDOG_ENGINE to one of them, or unset it"),
    ("CATDOG_PROGRESS", "rich", "CATDOG_PROGRESS='rich' is not one of auto, live, plain"),
    ("CATDOG_SETTINGS", "{", "CATDOG_SETTINGS is not a JSON object of settings (Expecting "),
    ("CATDOG_SETTINGS", "[1]", "CATDOG_SETTINGS is not a JSON object of settings ([1]); the "
     "build sets it for its page kernels: unset it to run a page by hand"),
])
def test_a_malformed_value_names_the_variable_and_the_fix(name: str, value: str,
                                                          message: str) -> None:
    with pytest.raises(ConfigError) as error:
        read({name: value})
    assert str(error.value).startswith(message)
    assert error.value.exit_code == 2


def test_an_unknown_variable_is_warned_about_once_with_a_hint(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="catdog_report.environment")
    env = read({"CATDOG_WORKER": "2", "CATDOG_FAULT_TEST": "x", "CATDOG_JOBS": "2"})
    assert env.unknown == ("CATDOG_FAULT_TEST", "CATDOG_WORKER") and env.jobs == 2
    assert env.workers is None  # the misspelt one is ignored
    env.warn_unknown()
    env.warn_unknown()  # once per process
    assert caplog.messages[1] == ("CATDOG_WORKER is not a catdog-report variable and is "
                                  "ignored (did you mean CATDOG_WORKERS?)")
    assert caplog.messages[0].startswith("CATDOG_FAULT_TEST is not a catdog-report variable "
                                         "and is ignored (the variables it reads: "
                                         "CATDOG_PROFILE, CATDOG_DATA_DIR, ")
    assert len(caplog.messages) == 2


def test_a_page_by_hand_takes_the_variables_and_one_in_a_build_takes_the_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="catdog_report.environment")
    monkeypatch.setenv("CATDOG_PROFILE", "demo")
    monkeypatch.setenv("CATDOG_ENGINE", "zensical")
    monkeypatch.setenv("CATDOG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CATDOG_PROFLE", "quick")
    by_hand = config.from_environment()
    assert (by_hand.profile, by_hand.engine, by_hand.data_dir) == ("demo", "zensical", tmp_path)
    assert caplog.messages == ["CATDOG_PROFLE is not a catdog-report variable and is ignored "
                               "(did you mean CATDOG_PROFILE?)"]
    handed = Settings(profile="quick", seed=3)
    monkeypatch.setenv("CATDOG_SETTINGS", handed.to_json())
    assert config.from_environment() == handed  # the build's hand-off wins over the variables
    assert config.from_environment({"seed": 4}).seed == 4


def test_an_option_wins_over_its_variable_and_the_variable_over_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = cli.parser().parse_args(["build"])
    assert (defaults.profile, defaults.jobs, defaults.workers, defaults.engine,
            defaults.progress) == ("full", 2, 1, "mkdocs", "auto")
    for name, value in (("PROFILE", "quick"), ("JOBS", "5"), ("WORKERS", "3"),
                        ("ENGINE", "zensical"), ("PROGRESS", "plain")):
        monkeypatch.setenv(f"CATDOG_{name}", value)
    from_env = cli.parser().parse_args(["build"])
    assert (from_env.profile, from_env.jobs, from_env.workers, from_env.engine,
            from_env.progress) == ("quick", 5, 3, "zensical", "plain")
    given = cli.parser().parse_args(["--progress", "live", "build", "--profile", "demo", "-j",
                                     "1", "--workers", "2", "--engine", "mkdocs"])
    assert (given.profile, given.jobs, given.workers, given.engine,
            given.progress) == ("demo", 1, 2, "mkdocs", "live")


def test_the_cli_refuses_a_malformed_variable_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CATDOG_WORKERS", "many")
    assert cli.main(["build"]) == 2
    err = capsys.readouterr().err
    assert err == ("catdog-report: error: CATDOG_WORKERS='many' is not a positive whole "
                   "number; set CATDOG_WORKERS to the number of worker processes that train "
                   "runs at once, such as 2, or unset it\n")


def test_the_cli_warns_about_an_unknown_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv("CATDOG_JOB", "3")
    assert cli.main(["check-site", str(tmp_path)]) == 1  # no site there: an error after it
    err = capsys.readouterr().err
    assert "CATDOG_JOB is not a catdog-report variable and is ignored (did you mean " in err


def test_no_other_module_reads_a_catdog_variable() -> None:
    """The one reader: os.environ / getenv never meets a CATDOG_ name elsewhere in src/."""
    reads = re.compile(r"(?:environ(?:\.get)?|getenv)\(?\[?\s*[\"']CATDOG_")
    for path in sorted(SRC.glob("*.py")):
        if path.name != "environment.py":
            assert not reads.search(path.read_text()), path.name
    named = set(re.findall(r"CATDOG_[A-Z_]+[A-Z]", "".join(
        p.read_text() for p in SRC.glob("*.py"))))
    assert named <= set(environment.VARIABLES.values()), named - set(
        environment.VARIABLES.values())
