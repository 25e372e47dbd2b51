"""Every path a build is given is checked up front: one line (exit 2) naming the option,
the path and the fix, and nothing is written before it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from catdog_report import cli, paths
from mounts import remount_read_only, tmpfs

CACHE_FIX = "point --cache-dir at a writable folder"
DATA_FIX = ("point --data-dir at the cats_and_dogs_filtered folder (the one holding train/ "
            "and validation/)")
COPY = ("catdog-report writes build/ and site/ in the project: copy the project to a "
        "writable folder and build it there (--project)")


@pytest.fixture
def args(project: Path, tiny_data: Path, tmp_path: Path) -> dict[str, Path]:
    """Valid paths for a build; each test breaks one."""
    weights = tmp_path / "weights.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n")
    return {"--project": project, "--data-dir": tiny_data, "--weights": weights,
            "--cache-dir": tmp_path / "cache"}


def build_error(capsys: pytest.CaptureFixture[str], args: dict[str, Path]) -> str:
    """Run `catdog-report build` and return its one error line (asserting exit 2)."""
    argv = ["build", "--profile", "quick"]
    for option, value in args.items():
        if value is not None:
            argv += [option, str(value)]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    project = args["--project"]
    assert not (project / "build").exists() and not (project / "site").exists()
    return lines[0].removeprefix("catdog-report: error: ")


def test_cache_dir_is_a_file(capsys: pytest.CaptureFixture[str], args: dict[str, Path],
                             tmp_path: Path) -> None:
    args["--cache-dir"] = tmp_path / "cache.txt"
    args["--cache-dir"].write_text("not a folder")
    assert build_error(capsys, args) == (
        f"--cache-dir {tmp_path}/cache.txt is a file, not a folder; {CACHE_FIX} "
        "(or remove that file)")


def test_cache_dir_parent_missing(capsys: pytest.CaptureFixture[str], args: dict[str, Path],
                                  tmp_path: Path) -> None:
    args["--cache-dir"] = tmp_path / "typo" / "cache"
    assert build_error(capsys, args) == (
        f"--cache-dir {tmp_path}/typo/cache cannot be created: its parent folder "
        f"{tmp_path}/typo does not exist; create {tmp_path}/typo first, or {CACHE_FIX}")
    assert not (tmp_path / "typo").exists()


def test_cache_dir_inside_a_file(capsys: pytest.CaptureFixture[str], args: dict[str, Path],
                                 tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    args["--cache-dir"] = tmp_path / "f" / "cache"
    assert build_error(capsys, args) == (
        f"--cache-dir {tmp_path}/f/cache cannot be created: {tmp_path}/f is a file, not a "
        f"folder; {CACHE_FIX}")


def test_cache_dir_dangling_link(capsys: pytest.CaptureFixture[str], args: dict[str, Path],
                                 tmp_path: Path) -> None:
    (tmp_path / "cache").symlink_to(tmp_path / "gone")
    assert build_error(capsys, args) == (
        f"--cache-dir {tmp_path}/cache is a symbolic link to {tmp_path}/gone, which does not "
        f"exist; {CACHE_FIX}")


def test_cache_dir_from_the_environment_names_the_variable(
        capsys: pytest.CaptureFixture[str], args: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c").write_text("x")
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(tmp_path / "c"))
    args["--cache-dir"] = None  # type: ignore[assignment]
    assert build_error(capsys, args) == (
        f"CATDOG_CACHE_DIR {tmp_path}/c is a file, not a folder; point CATDOG_CACHE_DIR at a "
        "writable folder (or remove that file)")


@pytest.mark.parametrize("exists", [True, False], ids=["existing", "to-create"])
def test_cache_dir_on_a_read_only_file_system(capsys: pytest.CaptureFixture[str],
                                              args: dict[str, Path], tmp_path: Path,
                                              exists: bool) -> None:
    with tmpfs(tmp_path / "ro", "1m") as mount:
        if exists:
            (mount / "cache").mkdir()
        remount_read_only(mount)
        args["--cache-dir"] = mount / "cache"
        message = build_error(capsys, args)
    if exists:
        assert message == (f"--cache-dir {mount}/cache is on a read-only file system; "
                           f"{CACHE_FIX}")
    else:
        assert message == (f"--cache-dir {mount}/cache cannot be created: {mount} is on a "
                           f"read-only file system; {CACHE_FIX}")


def test_cache_dir_not_writable_permission(capsys: pytest.CaptureFixture[str],
                                           args: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Root ignores permission bits, so the denied write is injected."""
    cache = tmp_path / "cache"
    cache.mkdir()
    real = paths.tempfile.mkstemp

    def denied(*a: object, dir: str | Path | None = None, **kw: object) -> tuple[int, str]:
        if Path(str(dir)) == cache:
            raise PermissionError(errno.EACCES, "Permission denied", str(cache))
        return real(*a, dir=dir, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(paths.tempfile, "mkstemp", denied)
    assert build_error(capsys, args) == (
        f"--cache-dir {cache} is not writable (permission denied); {CACHE_FIX}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits; the "
                    "injected variant above covers it")
def test_cache_dir_not_writable_chmod(capsys: pytest.CaptureFixture[str],
                                      args: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o500)
    try:
        assert build_error(capsys, args) == (
            f"--cache-dir {cache} is not writable (permission denied); {CACHE_FIX}")
    finally:
        cache.chmod(0o700)


@pytest.mark.parametrize("name", ["build", "site"])
def test_build_and_site_folders_that_are_files(capsys: pytest.CaptureFixture[str],
                                               args: dict[str, Path], name: str) -> None:
    project = args["--project"]
    (project / name).write_text("oops")
    argv = ["build", "--profile", "quick"] + [str(v) for kv in args.items() for v in kv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"catdog-report: error: the {name} folder {project}/{name} is a file, not a "
                   f"folder; remove or rename that file; catdog-report creates the folder "
                   f"{name}/ in its place")
    assert (project / name).read_text() == "oops"


def test_project_on_a_read_only_file_system(capsys: pytest.CaptureFixture[str],
                                            args: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    with tmpfs(tmp_path / "ro", "8m") as mount:
        shutil.copytree(args["--project"], mount / "project")
        remount_read_only(mount)
        args["--project"] = mount / "project"
        message = build_error(capsys, args)
    assert message == (f"the build folder {mount}/project/build cannot be created: "
                       f"{mount}/project is on a read-only file system; {COPY}")


def test_read_only_data_is_fine_but_a_missing_one_is_not(
        capsys: pytest.CaptureFixture[str], args: dict[str, Path], tmp_path: Path) -> None:
    args["--data-dir"] = tmp_path / "nowhere"
    assert build_error(capsys, args) == f"--data-dir {tmp_path}/nowhere does not exist; {DATA_FIX}"
    zipped = tmp_path / "cats_and_dogs_filtered.zip"
    zipped.write_bytes(b"PK")
    args["--data-dir"] = zipped
    assert build_error(capsys, args) == (
        f"--data-dir {zipped} is a file, not a folder (unzip it first); {DATA_FIX}")
    given = paths.given_paths({"data_dir": None})
    assert "data_dir" not in given


def test_data_dir_from_the_environment(capsys: pytest.CaptureFixture[str],
                                       args: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATDOG_DATA_DIR", str(tmp_path / "gone"))
    args["--data-dir"] = None  # type: ignore[assignment]
    assert build_error(capsys, args) == (
        f"CATDOG_DATA_DIR {tmp_path}/gone does not exist; point CATDOG_DATA_DIR at the "
        "cats_and_dogs_filtered folder (the one holding train/ and validation/)")


def test_weights(capsys: pytest.CaptureFixture[str], args: dict[str, Path],
                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "mobilenet.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    args["--weights"] = folder
    assert build_error(capsys, args) == (
        f"--weights {folder} is a folder, not a file; point --weights at the .h5 file such as "
        f"{folder}/mobilenet.h5")
    args["--weights"] = None  # type: ignore[assignment]
    monkeypatch.setenv("CATDOG_WEIGHTS", str(tmp_path / "missing.h5"))
    assert build_error(capsys, args) == (
        f"CATDOG_WEIGHTS {tmp_path}/missing.h5 does not exist; point CATDOG_WEIGHTS at a local "
        "no-top weights file of the base, such as "
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5")
