"""The GitHub Actions workflow that builds the site and deploys it to GitHub Pages.

Fast and offline: check-jsonschema validates against the GitHub workflow schema it vendors,
and the rest reads the YAML.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "site.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

# Every top-level entry the build reads: a change to any of them must change the cache key.
BUILD_INPUTS = ("src", "content", "mkdocs.yml", "pyproject.toml", "study.yml", "constraints.txt",
                "frozen")
MAIN_ONLY = ("github.event_name == 'push'", "refs/heads/main")


def validate(path: Path, schema: str = "vendor.github-workflows") -> tuple[int, dict[str, Any]]:
    """Run check-jsonschema with one of its built-in (vendored, offline) schemas."""
    assert CHECK_JSONSCHEMA.is_file(), (
        f"{CHECK_JSONSCHEMA} is missing; install the test extras: pip install -e '.[test]'")
    done = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, "--output-format", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {"status": "unreadable", "stdout": done.stdout, "stderr": done.stderr}
    return done.returncode, report


def error_paths(report: dict[str, Any]) -> set[str]:
    """Every JSON path the report blames, including the deepest match under a oneOf."""
    paths = set()
    for error in report.get("errors", []):
        paths.add(error["path"])
        for key in ("best_match", "best_deep_match"):
            if key in error:
                paths.add(error[key]["path"])
    return paths


def load() -> dict[str, Any]:
    """The workflow, with the `on` key (a boolean True under YAML 1.1) put back as "on"."""
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    if True in data:
        data["on"] = data.pop(True)
    return data


def write(data: dict[str, Any], path: Path) -> Path:
    """Dump a workflow; the string key "on" is quoted, so it stays a string."""
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load()


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def step_using(workflow: dict[str, Any], job: str, action: str) -> dict[str, Any]:
    """The one step of a job that uses `action` (any version)."""
    found = [s for s in steps(workflow, job) if s.get("uses", "").split("@")[0] == action]
    assert len(found) == 1, f"jobs.{job} should use {action} exactly once, found {len(found)}"
    assert re.fullmatch(r"v\d+", found[0]["uses"].split("@")[1]), found[0]["uses"]
    return found[0]


def runs(workflow: dict[str, Any], job: str) -> list[str]:
    return [s["run"] for s in steps(workflow, job) if "run" in s]


def hashed_patterns(key: str) -> list[str]:
    """The quoted arguments of every hashFiles(...) call in a cache key."""
    calls = re.findall(r"hashFiles\(([^)]*)\)", key)
    assert calls, f"the cache key has no hashFiles(...): {key!r}"
    return [arg for call in calls for arg in re.findall(r"'([^']*)'", call)]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for an @actions/glob pattern as hashFiles reads it (`**` spans folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def hashed(relative: str, patterns: list[str]) -> bool:
    """Whether hashFiles(patterns) covers a file (a leading ! excludes)."""
    included = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if glob_regex(pattern.lstrip("!")).fullmatch(relative):
            included = not negate
    return included


def build_input_files(entry: str) -> list[str]:
    """The files of a build input, as repository-relative POSIX paths (no byte-code)."""
    path = ROOT / entry
    if path.is_file():
        return [entry]
    return sorted(p.relative_to(ROOT).as_posix() for p in path.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


# --- the published schema -----------------------------------------------------------------


def test_workflow_is_valid_under_githubs_schema() -> None:
    rc, report = validate(WORKFLOW)
    assert rc == 0, report
    assert report["status"] == "ok"


def test_every_job_has_a_timeout() -> None:
    rc, report = validate(WORKFLOW, "custom.github-workflows-require-timeout")
    assert rc == 0, report


def test_an_unmodified_round_trip_stays_valid(tmp_path: Path) -> None:
    """The control for the broken copies below: dumping alone breaks nothing."""
    rc, report = validate(write(load(), tmp_path / "same.yml"))
    assert rc == 0, report


def _drop_on(data: dict[str, Any]) -> None:
    del data["on"]


def _numeric_runs_on(data: dict[str, Any]) -> None:
    data["jobs"]["build"]["runs-on"] = 42


def _bad_permission(data: dict[str, Any]) -> None:
    data["jobs"]["deploy"]["permissions"]["pages"] = "maybe"


@pytest.mark.parametrize(("breakage", "blamed"), [
    (_drop_on, "$"),
    (_numeric_runs_on, "$.jobs.build['runs-on']"),
    (_bad_permission, "$.jobs.deploy.permissions.pages"),
], ids=["no-on", "runs-on-number", "permission-maybe"])
def test_a_broken_copy_fails_validation(tmp_path: Path, breakage: Any, blamed: str) -> None:
    data = copy.deepcopy(load())
    breakage(data)
    rc, report = validate(write(data, tmp_path / "broken.yml"))
    assert rc != 0, "check-jsonschema passed a broken workflow"
    assert report["status"] == "fail", report
    assert blamed in error_paths(report), report


# --- triggers, permissions, concurrency ---------------------------------------------------


def test_triggers(workflow: dict[str, Any]) -> None:
    on = workflow["on"]
    assert on["push"]["branches"] == ["main"]
    assert "pull_request" in on
    assert "workflow_dispatch" in on


def test_least_privilege_permissions(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    assert "permissions" not in workflow["jobs"]["build"]
    deploy = workflow["jobs"]["deploy"]["permissions"]
    assert deploy["pages"] == "write"
    assert deploy["id-token"] == "write"


def test_concurrency_keeps_pushes_from_racing(workflow: dict[str, Any]) -> None:
    concurrency = workflow["concurrency"]
    assert "github.ref" in concurrency["group"]
    # Pull requests cancel stale runs; a deployment from main is never cut off.
    assert "pull_request" in str(concurrency["cancel-in-progress"])


# --- the build job ------------------------------------------------------------------------


def test_build_job_setup(workflow: dict[str, Any]) -> None:
    build = workflow["jobs"]["build"]
    assert build["runs-on"] == "ubuntu-latest"
    assert 60 <= build["timeout-minutes"] <= 360  # the full profile trains ~40 min
    step_using(workflow, "build", "actions/checkout")
    python = step_using(workflow, "build", "actions/setup-python")["with"]
    assert str(python["python-version"]) == "3.11"
    assert python["cache"] == "pip"
    assert python["cache-dependency-path"].split() == ["pyproject.toml", "constraints.txt"]


def test_profile_is_full_on_main_and_quick_on_pull_requests(workflow: dict[str, Any]) -> None:
    profile = workflow["jobs"]["build"]["env"]["PROFILE"]
    assert re.fullmatch(
        r"\$\{\{\s*github\.event_name == 'pull_request' && 'quick' \|\| 'full'\s*\}\}", profile)


def test_cache_step(workflow: dict[str, Any]) -> None:
    cache = step_using(workflow, "build", "actions/cache")["with"]
    paths = cache["path"].splitlines()
    assert ".cache" in paths
    assert "~/.keras" in paths
    key = cache["key"]
    assert "env.PROFILE" in key
    patterns = hashed_patterns(key)
    assert any(p.startswith("src/") for p in patterns)
    assert any(p.startswith("content/") for p in patterns)
    # Older caches are safe to restore (the run cache is content addressed); the profile's
    # own prefix comes first.
    restore = cache["restore-keys"].splitlines()
    prefix = key.split("${{ hashFiles")[0]
    assert restore[0] == prefix


def test_cache_is_restored_before_the_build(workflow: dict[str, Any]) -> None:
    order = [s.get("uses", "").split("@")[0] or s["run"] for s in steps(workflow, "build")]
    cache = order.index("actions/cache")
    assert cache < order.index("make install")
    assert cache < next(i for i, s in enumerate(order) if s.startswith("make site"))


def test_build_commands(workflow: dict[str, Any]) -> None:
    commands = runs(workflow, "build")
    assert "make install" in commands
    site = [c for c in commands if c.startswith("make site")]
    assert len(site) == 1 and "PROFILE" in site[0] and "$PROFILE" in site[0]
    assert ".venv/bin/catdog-report check-site site" in commands
    assert commands.index(site[0]) < commands.index(".venv/bin/catdog-report check-site site")


def test_pages_artifact_on_main(workflow: dict[str, Any]) -> None:
    configure = step_using(workflow, "build", "actions/configure-pages")
    upload = step_using(workflow, "build", "actions/upload-pages-artifact")
    assert upload["with"]["path"].rstrip("/") == "site"
    for step in (configure, upload):
        assert all(part in step["if"] for part in MAIN_ONLY), step


def test_preview_artifact_on_pull_requests(workflow: dict[str, Any]) -> None:
    preview = step_using(workflow, "build", "actions/upload-artifact")
    assert preview["with"]["name"] == "site-preview"
    assert preview["with"]["path"].rstrip("/") == "site"
    assert preview["if"] == "github.event_name == 'pull_request'"


# --- the deploy job -----------------------------------------------------------------------


def test_deploy_job(workflow: dict[str, Any]) -> None:
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] in ("build", ["build"])
    assert all(part in deploy["if"] for part in MAIN_ONLY), deploy["if"]
    step = step_using(workflow, "deploy", "actions/deploy-pages")
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["environment"]["url"] == f"${{{{ steps.{step['id']}.outputs.page_url }}}}"


# --- the cache key covers every build input ---------------------------------------------


def test_cache_key_hashes_every_build_input(workflow: dict[str, Any]) -> None:
    patterns = hashed_patterns(step_using(workflow, "build", "actions/cache")["with"]["key"])
    missed = {}
    for entry in BUILD_INPUTS:
        files = build_input_files(entry)
        assert files, f"{entry} is a build input but holds no files"
        if unhashed := [f for f in files if not hashed(f, patterns)]:
            missed[entry] = unhashed[:3]
    assert not missed, f"hashFiles{tuple(patterns)} misses build inputs: {missed}"


def test_every_hashed_pattern_matches_a_file(workflow: dict[str, Any]) -> None:
    """A typo in hashFiles(...) would silently hash nothing."""
    patterns = hashed_patterns(step_using(workflow, "build", "actions/cache")["with"]["key"])
    files = [f for entry in BUILD_INPUTS for f in build_input_files(entry)]
    for pattern in patterns:
        if not pattern.startswith("!"):
            assert any(glob_regex(pattern).fullmatch(f) for f in files), pattern


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("src/**", "src/catdog_report/cli.py", True),
    ("src/**", "content/index.md", False),
    ("content/*", "content/assets/extra.css", False),
    ("content/**", "content/assets/extra.css", True),
    ("mkdocs.yml", "mkdocs.yml", True),
    ("*.toml", "pyproject.toml", True),
])
def test_glob_matcher(pattern: str, path: str, matches: bool) -> None:
    """The stand-in for @actions/glob that the coverage test relies on."""
    assert hashed(path, [pattern]) is matches


def test_the_build_installs_the_versions_run_keys_hold(workflow: dict[str, Any]) -> None:
    """Frozen runs are found only when their keys match: make install (which the workflow
    runs) pins TensorFlow, Keras and NumPy, the versions training.versions() puts in keys."""
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install --quiet -c constraints.txt -e ".[test,zensical]"' in makefile
    pinned = {line.split("==")[0] for line in (ROOT / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert pinned == {"tensorflow-cpu", "keras", "numpy"}
    assert "make install" in runs(workflow, "build")
