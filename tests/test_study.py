"""study.yml: the declaration read as frozen, validated data; errors name the file and fix."""

from pathlib import Path

import pytest
import yaml

from catdog_report import study
from catdog_report.errors import ConfigError
from conftest import ROOT

BUILDERS = '''
import keras

def tiny(image_size):
    model = keras.Sequential([keras.Input((image_size, image_size, 3)),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model

def convnet(image_size):
    model = keras.Sequential([keras.Input((image_size, image_size, 3)),
                              keras.layers.Conv2D(16, 3), keras.layers.MaxPooling2D(2),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model

def tuned(parent, image_size):
    parent.compile(optimizer=keras.optimizers.Adam(1e-4),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return parent
'''


def write_study(folder: Path, **changes: object) -> Path:
    """A small valid study (two models, one starting from the other), with changes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "builders.py").write_text(BUILDERS)
    raw: dict = {
        "title": "Shapes",
        "data": {"name": "shapes", "classes": ["circles", "squares"]},
        "profiles": {"full": {"description": "all"}, "quick": {"train_per_class": 5}},
        "models": {
            "small": {"title": "Small", "builder": "builders.py:tiny",
                      "epochs": {"full": 3, "quick": 1}},
            "tuned": {"title": "Tuned", "builder": "builders.py:tuned", "starts_from": "small",
                      "epochs": {"full": 2, "quick": 1}, "colour": "#123456"},
        },
    }
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = raw
        for part in path:
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path = folder / "study.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_projects_own_study() -> None:
    s = study.load(ROOT / "study.yml")
    assert list(s.models) == ["model_one", "model_two", "model_three", "model_four"]
    assert s.models["model_four"].weights == "mobilenet_v2"
    assert s.data.classes == ("cats", "dogs") and s.data.grid_rows == ("dogs", "cats")
    assert s.data.generator == "content/demo_drawings.py:draw"
    assert s.epochs("model_two", "full") == 30 and s.profiles["demo"].synthetic
    assert len(set(s.colours().values())) == 4


def test_a_valid_study_and_its_order(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    assert s.titles() == {"small": "Small", "tuned": "Tuned"}
    assert s.colours()["small"] == study.PALETTE[0] and s.colours()["tuned"] == "#123456"
    assert s.order(["tuned"]) == ["small", "tuned"]  # the parent comes first
    assert s.data.grid_rows == ("circles", "squares")  # default: the classes' order
    assert s.code_files() == [tmp_path / "builders.py"]
    (tmp_path / "demo").mkdir()  # a generator elsewhere: its folder's code is the study's too
    (tmp_path / "demo" / "drawn.py").write_text("def draw(rng, class_name, size):\n    pass\n")
    drawn = study.load(write_study(tmp_path, data__generator="demo/drawn.py:draw"))
    assert drawn.code_files() == [tmp_path / "builders.py", tmp_path / "demo" / "drawn.py"]
    assert study.builder_source(s, "tiny").startswith("def tiny(image_size):")


@pytest.mark.parametrize(("changes", "message"), [
    ({"modles": {}}, r"unknown key 'modles' \(did you mean 'models'\?\)"),
    ({"models__small__epoch": {"full": 1}}, r"models.small: unknown key 'epoch' .*'epochs'"),
    ({"models__small__epochs": {"full": 3}}, None),  # checked when the profile is asked for
    ({"models__small__epochs": {"ful": 3}}, r"unknown profile 'ful' \(did you mean 'full'\?\)"),
    ({"models__small__epochs": {"full": 0}}, r"models.small.epochs.full: expected a positive"),
    ({"models__small__builder": "builders.py"}, r"expected FILE.py:function"),
    ({"models__small__builder": "nothere.py:tiny"}, r"nothere.py does not exist"),
    ({"models__small__weights": "mobilenet"}, r"unknown base 'mobilenet' .*mobilenet_v2"),
    ({"models__tuned__starts_from": "smal"}, r"unknown model 'smal' \(did you mean 'small'"),
    ({"models__small__starts_from": "tuned"}, r"a cycle: small -> tuned -> small"),
    ({"models__small__colour": "red"}, r"expected #rrggbb"),
    ({"data__classes": ["one"]}, r"data.classes: expected two or more"),
    ({"data__grid_rows": ["triangles"]}, r"data.grid_rows: expected class names"),
    ({"claims": [{"model": "small", "metric": "val_accuracy", "low": 0.5, "high": 0.6,
                  "profile": "ful"}]}, r"claims\[0\].profile: unknown profile 'ful' \(did you "
                                       r"mean 'full'\?\)"),
    ({"pages": {"cell_timeout": 0}}, r"pages.cell_timeout: expected a positive whole number"),
    ({"pages": {"cell_timout": 9}}, r"pages: unknown key 'cell_timout' .*'cell_timeout'"),
])
def test_bad_declarations_name_the_file_and_the_place(tmp_path: Path, changes: dict,
                                                      message: str | None) -> None:
    path = write_study(tmp_path, **changes)
    if message is None:
        s = study.load(path)
        with pytest.raises(ConfigError, match=r"lists no epochs for profile 'quick'; add "
                                              r"`quick: N`"):
            s.epochs("small", "quick")
        return
    with pytest.raises(ConfigError, match=message) as err:
        study.load(path)
    assert str(path) in str(err.value)


def test_claims_name_the_profile_they_describe(tmp_path: Path) -> None:
    claims = [{"model": "small", "metric": "val_accuracy", "low": 0.5, "high": 0.6,
               "profile": "full"},
              {"model": "tuned", "metric": "test_accuracy", "low": 0.5, "high": 0.6}]
    s = study.load(write_study(tmp_path, claims=claims))
    assert [c.profile for c in s.claims] == ["full", None]
    assert s.claims[0].applies_to("full") and not s.claims[0].applies_to("quick")
    assert s.claims[1].applies_to("quick")  # no profile: a claim about every profile
    own = study.load(ROOT / "study.yml")  # the walkthrough's claims are about its full runs
    assert own.claims and {c.profile for c in own.claims} == {"full"}


def test_unknown_model_and_profile_suggest(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown model 'smal' \(did you mean 'small'"):
        s.model("smal")
    with pytest.raises(ConfigError, match=r"unknown profile 'quik' \(did you mean 'quick'"):
        s.profile("quik")


def test_builders_are_imported_and_called_with_what_they_name(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    fn = s.builder("tuned")
    assert study.builder_kwargs(fn, {"image_size": 8, "weights": None, "parent": "P"}) == {
        "image_size": 8, "parent": "P"}

    def bad(image_size, learning_rate):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(ConfigError, match=r"asks for \['learning_rate'\]"):
        study.builder_kwargs(bad, {"image_size": 8})
    (tmp_path / "builders.py").write_text("def other(): pass\n")
    s2 = study.load(write_study(tmp_path / "again"))
    (tmp_path / "again" / "builders.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"cannot import builders.py .*RuntimeError: boom"):
        s2.builder("small")


def test_a_missing_builder_function_suggests(tmp_path: Path) -> None:
    path = write_study(tmp_path, models__small__builder="builders.py:tinny")
    with pytest.raises(ConfigError, match=r"has no function 'tinny' .*did you mean 'tiny'"):
        study.load(path).builder("small")


def test_an_alias_bomb_is_refused_at_once_naming_study_yml(tmp_path: Path) -> None:
    import time

    path = write_study(tmp_path, models__small__description="BOMB")
    bomb = "".join(f"      - &a{i} [" + ", ".join([f"*a{i - 1}" if i else '"lol"'] * 9) + "]\n"
                   for i in range(10))  # the last list expands to 9 ** 10 strings
    path.write_text(path.read_text().replace("description: BOMB", "description:\n" + bomb))
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        study.load(path)
    assert time.perf_counter() - t0 < 5
    assert str(err.value) == (
        f"{path}: top level: more than 50,000 values once its YAML aliases (*name) are "
        "expanded; an alias repeated inside aliases grows exponentially; write the values "
        "out or use fewer aliases")
    small = write_study(tmp_path / "small")  # a few aliases are fine; text must be text
    small.write_text(small.read_text().replace("title: Small", "title: &t Small"))
    assert study.load(small).models["small"].title == "Small"
    listed = write_study(tmp_path / "listed", models__small__description=["a", "b"])
    with pytest.raises(ConfigError, match=r"models.small.description: expected text, got a "
                                          r"list"):
        study.load(listed)
    deep = write_study(tmp_path / "deep")
    deep.write_text(deep.read_text() + "deep: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=r"study.yml"):
        study.load(deep)


@pytest.mark.parametrize(("builder", "source", "message"), [
    ("os:system", None, r"os defines no function 'system' at its top level; a builder is a "
                        r"plain function at the top of os.py, `def system\(image_size, "
                        r"weights, parent\)` taking only the ones it needs"),
    ("json:loads", None, r"loads\(\) takes s, cls, .*\*\*kw; a builder takes only"),
    ("builders.py:tiny", "tiny = print\n", r"'tiny' in builders.py is an assigned value, not "
                                           r"a plain Python function"),
    ("builders.py:tiny", "class tiny:\n    pass\n", r"is a class, not a plain Python"),
    ("builders.py:tiny", "from os import system as tiny\n", r"is an imported name"),
    ("builders.py:tiny", "async def tiny(image_size):\n    pass\n", r"is an async function"),
    ("builders.py:tiny", "import functools\n@functools.cache\ndef tiny(image_size):\n    pass\n",
     r"is a decorated function"),
    ("builders.py:tiny", "def tiny(image_size, learning_rate=0.1):\n    pass\n",
     r"tiny\(\) takes learning_rate; a builder takes only image_size, weights, parent"),
    ("builders.py:tiny", "def tiny(*args, **kwargs):\n    pass\n", r"takes \*args, \*\*kwargs"),
    ("builders.py:tiny", "def tiny(image_size, /):\n    pass\n", r"image_size \(positional-only"),
    ("builders.py:tiny", "def tinny(image_size):\n    pass\n",
     r"defines no function 'tiny' at its top level \(did you mean 'tinny'\?\)"),
    ("builders.py:tiny", "def tiny(image_size:\n", r"cannot read builders.py as Python \(line 2\)"),
    ("builders.py:tiny", "import catdog_nothere.sub\ndef tiny(image_size):\n    pass\n",
     r"builders.py imports catdog_nothere.sub \(line 2\), which is not installed: "
     r"ModuleNotFoundError: No module named 'catdog_nothere'"),
    ("catdog_nothere.mod:tiny", None, r"no module 'catdog_nothere.mod' is installed"),
    ("math:sqrt", None, r"math is not Python source"),
])
def test_every_builder_is_checked_from_its_source_naming_study_yml_and_the_model(
        tmp_path: Path, builder: str, source: str | None, message: str) -> None:
    path = write_study(tmp_path, models__small__builder=builder)
    marker = tmp_path / "imported"
    if source is not None:
        (tmp_path / "builders.py").write_text(
            f"open({str(marker)!r}, 'w').close()\n" + source
            + "\ndef tuned(parent):\n    return parent\n")
    s = study.load(path)
    with pytest.raises(ConfigError, match=message) as err:
        study.check_builders(s)
    assert str(err.value).startswith(f"{path}: models.small.builder: {builder}: ")
    assert not marker.exists()  # read, never imported
    study.check_builders(study.load(write_study(tmp_path / "good")))  # the valid ones pass


def test_a_claim_about_a_removed_model_says_so(tmp_path: Path) -> None:
    path = write_study(tmp_path, claims=[{"model": "removed_model", "metric": "val_accuracy",
                                          "low": 0.5, "high": 0.6}])
    with pytest.raises(ConfigError) as err:
        study.load(path)
    assert str(err.value) == (
        f"{path}: claims[0].model: a claim about model 'removed_model', which study.yml does "
        "not declare (it declares small, tuned); a removed model's claims go with it: delete "
        "this claim, or fix the name")


@pytest.mark.parametrize("breakage", ["import error", "os:system"])
def test_a_bad_builder_fails_the_build_before_any_kernel_or_training(
        project: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        breakage: str) -> None:
    from catdog_report import pages, training
    from catdog_report.build import build
    from catdog_report.config import Settings

    started: list[str] = []

    async def kernel(path: Path, *args: object) -> None:
        started.append(path.name)

    monkeypatch.setattr(pages, "run_page_async", kernel)
    monkeypatch.setattr(training, "find_or_fit", lambda *a, **k: started.append("training"))
    models = project / "content" / "models.py"
    if breakage == "import error":  # passes the source check; fails when imported
        models.write_text("raise RuntimeError('boom at import')\n" + models.read_text())
    else:
        yml = project / "study.yml"
        yml.write_text(yml.read_text().replace("content/models.py:model_two", "os:system"))
    settings = Settings(profile="quick", project_dir=project, data_dir=tiny_data,
                        cache_dir=tmp_path / "cache", image_size=64, batch_size=8)
    with pytest.raises(ConfigError) as err:
        build(settings)
    assert started == [] and not settings.site_dir.exists()
    expected = (f"cannot import content/models.py for model 'model_one' ({project}/study.yml): "
                "RuntimeError: boom at import" if breakage == "import error" else
                f"{project}/study.yml: models.model_two.builder: os:system: os defines no "
                "function 'system' at its top level; a builder is a plain function at the top "
                "of os.py, `def system(image_size, weights, parent)` taking only the ones it "
                "needs")
    assert str(err.value) == expected


def test_removing_a_model_as_the_readme_says(project: Path) -> None:
    """Page, nav line and entry removed: its claims fail saying exactly why; once they go
    too (the README's last step), the study and its builders check."""
    from catdog_report import site

    (project / "content" / "model-four.md").unlink()
    config = project / "mkdocs.yml"
    config.write_text(config.read_text().replace("  - Model four: model-four.md\n", ""))
    path = project / "study.yml"
    raw = yaml.safe_load(path.read_text())
    del raw["models"]["model_four"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        study.load(path)
    assert str(err.value) == (
        f"{path}: claims[3].model: a claim about model 'model_four', which study.yml does not "
        "declare (it declares model_one, model_two, model_three); a removed model's claims go "
        "with it: delete this claim, or fix the name")
    raw["claims"] = [c for c in raw["claims"] if c["model"] != "model_four"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    s = study.load(path)
    study.check_builders(s)
    assert list(s.models) == ["model_one", "model_two", "model_three"]
    assert "model-four" not in site.nav_pages(project)


def test_function_sources_are_ast_s_own_segments(tmp_path: Path) -> None:
    """study.function_sources (its lines split once) gives what ast.get_source_segment
    gives: one-line and decorated functions, non-ASCII text, CRLF and CR line ends, a file
    without a final newline; a name defined twice keeps its first definition."""
    import ast

    text = ('import keras\r\n\r\n@staticmethod\ndef one(): return "café"  # é\n\n'
            'async def two(x):\r    """Ünïcode."""\r    return [x,\n            x]\r\n'
            'def one(): return 2\n\ndef last(y):\n    return y')
    path = tmp_path / "models.py"
    path.write_bytes(text.encode())
    read = path.read_text()
    expected = [(n.name, ast.get_source_segment(read, n)) for n in ast.parse(read).body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    got = list(study.function_sources([path]))
    assert got == [expected[0], expected[1], expected[3]]
    assert got[1][1].endswith("x]") and got[2] == ("last", "def last(y):\n    return y")
