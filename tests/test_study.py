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
    assert s.epochs("model_two", "full") == 30 and s.profiles["demo"].synthetic
    assert len(set(s.colours().values())) == 4


def test_a_valid_study_and_its_order(tmp_path: Path) -> None:
    s = study.load(write_study(tmp_path))
    assert s.titles() == {"small": "Small", "tuned": "Tuned"}
    assert s.colours()["small"] == study.PALETTE[0] and s.colours()["tuned"] == "#123456"
    assert s.order(["tuned"]) == ["small", "tuned"]  # the parent comes first
    assert s.data.grid_rows == ("circles", "squares")  # default: the classes' order
    assert s.builder_files() == [tmp_path / "builders.py"]
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
