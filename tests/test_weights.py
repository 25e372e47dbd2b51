"""Base weights: where the file comes from, and clear errors for a bad one."""

from pathlib import Path

import pytest

from catdog_report import weights
from catdog_report.errors import WeightsError
from conftest import ROOT


def test_missing_and_non_hdf5_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"does not exist.*CATDOG_WEIGHTS to a local "
                                           r"mobilenet_v2_weights_.*_1\.0_96_no_top\.h5"):
        weights.check_weights_file(tmp_path / "missing.h5", "mobilenet_v2", 96)
    bad = tmp_path / "weights.h5"
    bad.write_text("<html>404 not found</html>")
    with pytest.raises(WeightsError, match="not an HDF5"):
        weights.check_weights_file(bad, "mobilenet_v2", 160)


def test_the_expected_file_is_the_studys_base_at_the_builds_image_size() -> None:
    from catdog_report.config import Settings

    settings = Settings(project_dir=ROOT, image_size=128)
    assert weights.study_base(settings.study) == "mobilenet_v2"
    assert weights.expected_file(settings) == weights.FILES["mobilenet_v2"].format(size=128)


def test_weights_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from catdog_report.config import Settings

    h5 = tmp_path / "w.h5"
    h5.write_bytes(weights.HDF5_MAGIC + b"\0" * 8)
    env = tmp_path / "env.h5"
    env.write_bytes(weights.HDF5_MAGIC)
    monkeypatch.setenv("CATDOG_WEIGHTS", str(env))
    assert weights.resolve(Settings(project_dir=ROOT, weights=h5))[0] == str(h5)
    assert weights.resolve(Settings(project_dir=ROOT))[0] == str(env)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CATDOG_WEIGHTS", "env.h5")  # relative: made absolute for the kernels
    assert weights.resolve(Settings(project_dir=ROOT))[0] == str(env)
    monkeypatch.delenv("CATDOG_WEIGHTS")
    assert weights.resolve(Settings(project_dir=ROOT))[0] == "imagenet"
    assert weights.resolve(Settings(project_dir=ROOT, profile="demo")) == (
        None, "no ImageNet weights (offline demo): the base is untrained")
    cache = tmp_path / "keras-home" / "models" / weights.file_name("mobilenet_v2", 160)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(weights.HDF5_MAGIC)
    assert weights.resolve(Settings(project_dir=ROOT, profile="demo"))[1].endswith("Keras's cache")


def test_a_study_without_a_base_needs_no_weights(tmp_path: Path) -> None:
    from catdog_report.config import Settings
    from test_study import write_study

    s = Settings(project_dir=tmp_path, study_file=write_study(tmp_path))
    assert weights.resolve(s) == (None, "")
    assert weights.weights_id(None) == "random" and weights.weights_id("imagenet") == "imagenet"


def test_a_weights_file_is_hashed_once_until_it_changes(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from catdog_report import cache

    reads: list[Path] = []
    real = cache.file_digest
    monkeypatch.setattr(weights, "file_digest", lambda p: reads.append(p) or real(p))
    f = tmp_path / "w.h5"
    f.write_bytes(b"one")
    first = weights.weights_id(f)
    assert weights.weights_id(str(f)) == first and len(reads) == 1  # asked twice, read once
    assert first == "sha256:" + real(f)
    f.write_bytes(b"two")
    os.utime(f, ns=(1, 1))  # another time: hashed again
    assert weights.weights_id(f) == "sha256:" + real(f) != first and len(reads) == 2
