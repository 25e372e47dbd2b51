"""The demo data set on disk, generic over the study: a second, tiny study (circles and
squares, its own generator in a temp folder) gets its layout, determinism, atomic
replacement and clear errors from the same engine code as the cats and dogs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog_report import demo_data, study
from catdog_report.cache import file_digest
from catdog_report.config import Settings
from catdog_report.demo_data import Drawer, generate
from catdog_report.errors import ConfigError, DataError
from test_study import write_study

SHAPES = '''
from PIL import Image, ImageDraw


def draw(rng, class_name, size):
    """A dark square with a white circle or square in its middle."""
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 60, 3)))
    box = [size // 4, size // 4, 3 * size // 4, 3 * size // 4]
    shape = {"circles": ImageDraw.Draw(img).ellipse, "squares": ImageDraw.Draw(img).rectangle}
    shape[class_name](box, fill=(250, 250, 250))
    return img


def unused(rng, class_name, size):
    raise AssertionError("only the declared generator is called")
'''
DEMO = {"description": "drawn shapes", "synthetic": True, "train_per_class": 3,
        "validation_per_class": 2}


def shapes_study(folder: Path, source: str = SHAPES, **changes: object) -> Path:
    """The tiny study with a synthetic profile `demo` drawn by shapes.py:draw."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shapes.py").write_text(source)
    changes = {"data__generator": "shapes.py:draw", "profiles__demo": DEMO} | changes
    return write_study(folder, **changes)


@pytest.fixture
def shapes(tmp_path: Path) -> Drawer:
    """The tiny study's drawer."""
    return demo_data.drawer(study.load(shapes_study(tmp_path / "study")))


def _files(root: Path) -> dict[str, bytes]:
    """Map of relative path -> bytes of every file under root."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _corner(path: Path) -> int:
    """Brightness just inside the shape's bounding box corner: white for a square only."""
    with Image.open(path) as img:
        size = img.size[0]
        return int(np.asarray(img.convert("L"))[size // 4 + 2, size // 4 + 2])


def test_a_second_study_gets_its_own_classes_drawn_by_its_own_generator(
        tmp_path: Path) -> None:
    path = shapes_study(tmp_path / "study")
    settings = Settings(profile="demo", project_dir=tmp_path / "study",
                        cache_dir=tmp_path / "cache", image_size=48)
    root = demo_data.generate_for(settings)
    assert root.parent == tmp_path / "cache" / "synthetic"
    expected = {f"{split}/{c}/{c}.{i}.jpg" for c in ("circles", "squares")
                for split, numbers in (("train", range(3)), ("validation", range(3, 5)))
                for i in numbers}
    assert set(_files(root)) == expected | {"synthetic.json"}
    assert sorted(str(p) for p in demo_data.expected_files(("circles", "squares"), 3, 2)) == (
        sorted(expected))
    for name in expected:  # the declared draw(), told each image's class, drew every one
        assert (_corner(root / name) > 200) == ("/squares/" in name), name
    marker = json.loads((root / "synthetic.json").read_text(encoding="utf-8"))
    assert marker == {"format_version": demo_data.FORMAT_VERSION, "generator": "shapes.py:draw",
                      "generator_source": file_digest(path.parent / "shapes.py"),
                      "classes": ["circles", "squares"], "train_per_class": 3,
                      "validation_per_class": 2, "size": 48, "seed": 0}
    assert demo_data.generate_for(settings) == root  # made once


def test_a_changed_generator_source_makes_a_new_set(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    shapes_study(folder)
    settings = Settings(profile="demo", project_dir=folder, cache_dir=tmp_path / "cache",
                        image_size=32)
    first = demo_data.generate_for(settings)
    before = _files(first)
    shapes_study(folder, SHAPES.replace("(250, 250, 250)", "(250, 0, 0)"))
    second = demo_data.generate_for(settings)
    assert second != first and _files(first) == before  # the earlier set is left as it was
    with Image.open(second / "train/squares/squares.0.jpg") as img:
        red, green, _ = img.convert("RGB").getpixel((16, 16))
    assert red > 200 and green < 60
    marker = json.loads((second / "synthetic.json").read_text(encoding="utf-8"))
    assert marker["generator_source"] == file_digest(folder / "shapes.py")
    # the same folder given twice: the set in it is replaced when the source changes
    again = generate(first, demo_data.drawer(settings.study), train_per_class=3,
                     validation_per_class=2, size=32)
    assert again == first and _files(first) == _files(second)


def test_an_edited_generator_changes_the_page_key_and_the_data_manifest(
        tmp_path: Path) -> None:
    from catdog_report.build import resolve_data, study_parts

    folder = tmp_path / "study"
    demo = DEMO | {"validation_per_class": 5}
    shapes_study(folder, profiles__demo=demo)
    settings = Settings(profile="demo", project_dir=folder, cache_dir=tmp_path / "cache",
                        image_size=32)

    def keys() -> tuple[dict[str, str], str, str]:  # the code files a page key may hold
        dataset = resolve_data(settings)
        (folder / "mkdocs.yml").write_text("site_name: s\nnav: []\n")
        every = settings.replace(epochs=dict.fromkeys(settings.study.models, 1))
        return study_parts(every)["files"], dataset.manifest, dataset.source

    before = keys()
    assert keys() == before
    shapes_study(folder, SHAPES.replace("(250, 250, 250)", "(250, 0, 0)"), profiles__demo=demo)
    after = keys()
    assert after[0] != before[0] and after[1] != before[1]
    assert after[2] == before[2] == "generated offline by shapes.py:draw"


def test_the_generator_is_declared_and_checked_from_its_source(tmp_path: Path) -> None:
    path = write_study(tmp_path / "none", profiles__demo=DEMO)
    with pytest.raises(ConfigError) as err:
        study.load(path)
    assert str(err.value) == (
        f"{path}: profiles.demo.synthetic: a synthetic profile draws its images with the "
        "study's own function: declare `generator: FILE.py:function` under data:, a function "
        "(rng, class_name, size) returning a PIL image")
    with pytest.raises(ConfigError, match=r"data: unknown key 'generater' \(did you mean "
                                          r"'generator'\?\)"):
        study.load(shapes_study(tmp_path / "typo", data__generater="shapes.py:draw"))
    with pytest.raises(ConfigError, match=r"data.generator: nothere.py does not exist next to "
                                          r"study.yml"):
        study.load(shapes_study(tmp_path / "missing", data__generator="nothere.py:draw"))
    with pytest.raises(ConfigError, match=r"data.generator: expected FILE.py:function"):
        study.load(shapes_study(tmp_path / "bare", data__generator="shapes.py"))


@pytest.mark.parametrize(("source", "message"), [
    ("def drw(rng, class_name, size):\n    pass\n",
     r"shapes.py defines no function 'draw' at its top level \(did you mean 'drw'\?\); a "
     r"generator is a plain function at the top of shapes.py, `def draw\(rng, class_name, "
     r"size\)` returning a PIL image"),
    ("def draw(rng, size):\n    pass\n", r"draw\(\) takes rng, size; it is called as "
                                         r"draw\(rng, class_name, size\)"),
    ("def draw(rng, class_name, size, colour):\n    pass\n", r"takes rng, class_name, size, "
                                                             r"colour; it is called as"),
    ("draw = print\n", r"'draw' in shapes.py is an assigned value, not a plain Python"),
    ("import catdog_nothere\ndef draw(rng, class_name, size):\n    pass\n",
     r"shapes.py imports catdog_nothere \(line 2\), which is not installed"),
])
def test_a_bad_generator_fails_naming_study_yml_before_anything_is_imported(
        tmp_path: Path, source: str, message: str) -> None:
    marker = tmp_path / "imported"
    path = shapes_study(tmp_path / "study", f"open({str(marker)!r}, 'w').close()\n" + source)
    settings = Settings(profile="demo", project_dir=path.parent, cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match=message) as err:
        demo_data.generate_for(settings)
    assert str(err.value).startswith(f"{path}: data.generator: shapes.py:draw: ")
    assert not marker.exists() and not (tmp_path / "cache").exists()


def test_generate_with_a_study_that_has_no_generator_says_how_to_declare_one(
        tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    with pytest.raises(ConfigError, match=r"data: no generator declared; .* add "
                                          r"`generator: FILE.py:function` under data:"):
        demo_data.drawer(s)


def test_a_generator_that_returns_no_image_of_the_size_fails_naming_it(
        tmp_path: Path, shapes: Drawer) -> None:
    wrong = Drawer(shapes.ref, shapes.classes, shapes.source, lambda rng, name, size: None)
    with pytest.raises(DataError, match=r"data.generator shapes.py:draw returned NoneType for "
                                        r"circles.0.jpg; it must return a 32x32 PIL image"):
        generate(tmp_path / "ds", wrong, train_per_class=1, validation_per_class=1, size=32)
    small = Drawer(shapes.ref, shapes.classes, shapes.source,
                   lambda rng, name, size: Image.new("RGB", (8, 8)))
    with pytest.raises(DataError, match=r"returned a 8x8 image"):
        generate(tmp_path / "ds", small, train_per_class=1, validation_per_class=1, size=32)
    assert list(tmp_path.iterdir()) == [tmp_path / "study"]


def test_layout_modes_and_no_temp_left_behind(tmp_path: Path, shapes: Drawer) -> None:
    root = tmp_path / "shapes"
    assert generate(root, shapes, train_per_class=2, validation_per_class=1, size=40) == root
    assert {p.name for p in root.iterdir()} == {"train", "validation", "synthetic.json"}
    for path in root.rglob("*.jpg"):
        with Image.open(path) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (40, 40))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes", "study"]
    (tmp_path / "plain").mkdir()  # the set gets the umask's mode, not a private temp mode
    assert root.stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_same_seed_gives_identical_bytes_and_other_seed_differs(
        tmp_path: Path, shapes: Drawer) -> None:
    kwargs = {"train_per_class": 4, "validation_per_class": 2, "size": 32}
    a = _files(generate(tmp_path / "a", shapes, seed=7, **kwargs))
    b = _files(generate(tmp_path / "b", shapes, seed=7, **kwargs))
    c = _files(generate(tmp_path / "c", shapes, seed=8, **kwargs))
    assert a == b
    assert a.keys() == c.keys()
    images = [name for name in a if name.endswith(".jpg")]
    assert any(a[name] != c[name] for name in images)


def test_each_image_is_independent_of_the_set_size(tmp_path: Path, shapes: Drawer) -> None:
    small = _files(generate(tmp_path / "small", shapes, train_per_class=2,
                            validation_per_class=1, size=32))
    big = _files(generate(tmp_path / "big", shapes, train_per_class=2, validation_per_class=3,
                          size=32))
    for name in ("train/circles/circles.0.jpg", "train/squares/squares.1.jpg",
                 "validation/squares/squares.2.jpg"):
        assert small[name] == big[name]


def test_second_call_with_same_parameters_is_a_no_op(tmp_path: Path, shapes: Drawer) -> None:
    root = generate(tmp_path / "ds", shapes, train_per_class=2, validation_per_class=2, size=32)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    root_ino = root.stat().st_ino
    assert generate(root, shapes, train_per_class=2, validation_per_class=2, size=32) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert root.stat().st_ino == root_ino


def test_other_parameters_replace_an_earlier_set(tmp_path: Path, shapes: Drawer) -> None:
    root = generate(tmp_path / "ds", shapes, train_per_class=3, validation_per_class=1, size=32)
    generate(root, shapes, train_per_class=2, validation_per_class=1, size=24, seed=1)
    assert set(_files(root)) == {
        str(p) for p in demo_data.expected_files(shapes.classes, 2, 1)} | {"synthetic.json"}
    with Image.open(root / "train/circles/circles.0.jpg") as img:
        assert img.size == (24, 24)
    assert json.loads((root / "synthetic.json").read_text(encoding="utf-8"))["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "study"]


def test_incomplete_set_is_rebuilt(tmp_path: Path, shapes: Drawer) -> None:
    root = generate(tmp_path / "ds", shapes, train_per_class=2, validation_per_class=1, size=32)
    (root / "train/squares/squares.1.jpg").unlink()
    generate(root, shapes, train_per_class=2, validation_per_class=1, size=32)
    assert (root / "train/squares/squares.1.jpg").is_file()


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path, shapes: Drawer) -> None:
    root = tmp_path / "precious"
    root.mkdir()
    (root / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(DataError, match="not a synthetic data set made by catdog-report"):
        generate(root, shapes, train_per_class=1, validation_per_class=1, size=32)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "study"]


@pytest.mark.parametrize(
    "bad", [{"size": 8}, {"seed": -1}, {"train_per_class": -1}, {"size": 64.0}]
)
def test_rejects_bad_parameters(tmp_path: Path, shapes: Drawer, bad: dict[str, object]) -> None:
    with pytest.raises(DataError, match="must be an integer"):
        generate(tmp_path / "ds", shapes, **bad)  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == ["study"]


def test_interrupted_generation_leaves_nothing_behind(tmp_path: Path, shapes: Drawer) -> None:
    calls = 0

    def flaky(rng: np.random.Generator, name: str, size: int) -> Image.Image:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise KeyboardInterrupt("simulated interruption")
        return shapes.draw(rng, name, size)

    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "ds", Drawer(shapes.ref, shapes.classes, shapes.source, flaky),
                 train_per_class=4, validation_per_class=2, size=32)
    assert calls == 6
    assert [p.name for p in tmp_path.iterdir()] == ["study"]


def test_interruption_keeps_an_earlier_set_intact(tmp_path: Path, shapes: Drawer) -> None:
    root = generate(tmp_path / "ds", shapes, train_per_class=2, validation_per_class=1, size=32)
    before = _files(root)

    def broken(rng: np.random.Generator, name: str, size: int) -> Image.Image:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        generate(root, Drawer(shapes.ref, shapes.classes, shapes.source, broken),
                 train_per_class=2, validation_per_class=1, size=32, seed=3)
    assert _files(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "study"]


def test_the_cli_writes_a_synthetic_profiles_set(tmp_path: Path) -> None:
    from catdog_report.cli import main

    folder = shapes_study(tmp_path / "study").parent
    out = tmp_path / "out"
    assert main(["demo-data", str(out), "--project", str(folder), "--image-size", "32"]) == 0
    assert set(_files(out)) == {str(p) for p in demo_data.expected_files(
        ("circles", "squares"), 3, 2)} | {"synthetic.json"}
    assert main(["demo-data", str(tmp_path / "real"), "--project", str(folder),
                 "--profile", "quick"]) == 2
    assert not (tmp_path / "real").exists()
