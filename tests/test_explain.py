"""Grad-CAM maps: a known answer on tiny trained models, and the pure region arithmetic."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from catdog_report import explain

SIZE = 32


def _squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise photos whose class is decided by one region: class 1 has a bright 6x6 square
    somewhere (its top-left corner is returned), class 0 is noise only."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 90, (n, SIZE, SIZE, 3)).astype(np.uint8)
    y = np.arange(n) % 2
    corners = rng.integers(1, SIZE - 7, (n, 2))
    for i in np.flatnonzero(y == 1):
        r, c = corners[i]
        x[i, r:r + 6, c:c + 6] = 250
    return x, y, corners


def _model(kind: str) -> Any:
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    if kind == "sequential":
        return keras.Sequential([keras.Input((SIZE, SIZE, 3)), layers.Rescaling(1 / 255),
                                 layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(),
                                 layers.Conv2D(8, 3, activation="relu"), layers.Flatten(),
                                 layers.Dense(2)])
    if kind == "nested":  # a nested convolutional base, then a head with its own convolution
        base = keras.Sequential([keras.Input((SIZE, SIZE, 3)),
                                 layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(),
                                 layers.Conv2D(8, 3, padding="same", activation="relu")],
                                name="base")
        x = layers.Conv2D(8, 3, padding="same", activation="relu")(base(x))
    else:  # "dag": a skip connection, so the layers are no chain
        a = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        b = layers.Conv2D(8, 3, padding="same", activation="relu")(a)
        x = layers.MaxPooling2D()(layers.Add()([a, b]))
    return keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)), name=kind)


def _trained(kind: str) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    model = _model(kind)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x, y, _ = _squares(240, seed=0)
    model.fit(x.astype("float32"), y, epochs=8, batch_size=32, verbose=0)
    return model


def test_a_chain_is_read_from_the_graph_and_a_skip_connection_is_none() -> None:
    import keras
    from keras import layers

    assert explain._linked_in_order(_model("sequential"))
    assert explain._linked_in_order(_model("nested"))
    assert not explain._linked_in_order(_model("dag"))
    inputs = keras.Input((SIZE, SIZE, 3))
    shared = layers.Dense(4)
    flat = layers.Dense(4)(layers.Flatten()(inputs))
    twice = keras.Model(inputs, layers.Dense(2)(shared(shared(flat))))  # a layer called twice
    assert not explain._linked_in_order(twice)
    x = np.zeros((1, SIZE, SIZE, 3), np.float32)
    assert explain._is_chain(twice, x) and not explain._is_chain(_model("dag"), x)  # tried


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sequential", "nested", "dag"])
def test_peak_falls_in_the_region_that_decides_the_class(kind: str) -> None:
    model = _trained(kind)
    x, y, corners = _squares(40, seed=1)
    pred = np.asarray(model(x.astype("float32"), training=False)).argmax(axis=1)
    assert (pred == y).mean() >= 0.9  # the model has learnt the rule, so the answer is known
    targets = explain.conv_targets(model)
    assert [t.nested for t in targets] == ([False, True] if kind == "nested" else [False])
    assert targets[0].label.startswith("last convolution (conv2d")
    if kind == "nested":  # the base's map is named, with its last convolution and size
        assert targets[1].label.startswith("last block of base (conv2d")
        assert targets[1].label.endswith(", 15x15)")
    maps, note = explain.gradcam(model, x, pred)
    assert note == "" and set(maps) == {t.label for t in targets}
    for label, low in maps.items():
        heat = explain.upsample(low, (SIZE, SIZE))
        cell = SIZE / low.shape[1]  # pixels per map cell (the map is stretched over the photo)
        for i in np.flatnonzero((pred == 1) & (y == 1)):  # the square decided
            assert heat[i].sum() > 0, (label, i)
            r, c = np.unravel_index(int(np.argmax(heat[i])), heat[i].shape)
            top, left = corners[i]  # the peak lies on the square, give or take two map cells
            assert top - 2 * cell <= r < top + 6 + 2 * cell, (label, i, r, top)
            assert left - 2 * cell <= c < left + 6 + 2 * cell, (label, i, c, left)
    again, _ = explain.gradcam(model, x, pred)
    assert all(np.array_equal(maps[k], again[k]) for k in maps)  # deterministic
    _, note = explain.gradcam(model, x[:4], 1 - pred[:4])  # the other class: said
    assert note.endswith("on 4 of the 4 photos the model predicts another class than the "
                         "one mapped")


@pytest.mark.slow
def test_a_model_without_convolution_says_so() -> None:
    import keras
    from keras import layers

    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), layers.Flatten(), layers.Dense(2)])
    x, _, _ = _squares(2, seed=0)
    preds = pd.DataFrame({"file": ["a.jpg", "b.jpg"], "true": ["cats", "dogs"],
                          "predicted": ["cats", "cats"], "probability": [0.9, 0.6]})
    out = explain.explain(model, x, preds, ["cats", "dogs"])
    assert out.maps == {} and out.note == "it has no convolution layer"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nested", "dag"])
def test_maps_stored_with_a_run_are_the_maps_of_its_weights(kind: str, tmp_path: Any) -> None:
    model = _trained(kind)
    x, y, _ = _squares(40, seed=1)
    x = x.astype("float32")
    prob = np.asarray(model(x, training=False))
    pred = prob.argmax(axis=1)
    files = [f"test/{i}.jpg" for i in range(len(x))]
    names = ["cats", "dogs"]
    outputs = explain.store_maps(tmp_path, model, x, files, list(pred))
    np.testing.assert_allclose(outputs, prob, atol=1e-5)
    chosen = tmp_path / "chosen"  # classes chosen from the outputs of the maps' own pass
    chosen.mkdir()
    np.testing.assert_allclose(explain.store_maps(chosen, model, x, files,
                                                  lambda out: out.argmax(axis=1)), prob, atol=1e-5)
    rows = pd.DataFrame({"file": files, "true": [names[i] for i in y],
                         "predicted": [names[i] for i in pred],
                         "probability": prob.max(axis=1)}).iloc[[7, 3, 30, 12]]
    live = explain.explain(model, x[[7, 3, 30, 12]], rows, names)
    kept = explain.stored(tmp_path, rows, names, (SIZE, SIZE))
    assert kept is not None and kept.files == live.files and kept.note == live.note
    assert kept.sizes == live.sizes and set(kept.maps) == set(live.maps) != set()
    for label, maps in live.maps.items():  # the same maps, photo by photo, in the rows' order
        np.testing.assert_allclose(kept.maps[label], maps, atol=1e-5)
    other = rows.assign(predicted=[names[1 - names.index(p)] for p in rows["predicted"]])
    assert explain.stored(tmp_path, other, names, (SIZE, SIZE)) is None  # another class
    unknown = rows.assign(file=["test/elsewhere.jpg", *rows["file"][1:]])
    assert explain.stored(tmp_path, unknown, names, (SIZE, SIZE)) is None
    assert explain.stored(None, rows, names, (SIZE, SIZE)) is None
    same = explain.stored(chosen, rows, names, (SIZE, SIZE))
    assert same is not None and same.note == kept.note
    for label, maps in kept.maps.items():
        np.testing.assert_array_equal(same.maps[label], maps)


def test_maps_of_another_version_or_damaged_are_not_used(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = {"version": explain.version(), "files": ["a.jpg"], "classes": [1],
            "labels": ["last convolution (c, 2x2)"], "skipped": "", "none": ""}
    def write(meta: dict[str, Any]) -> None:
        import json

        np.savez_compressed(tmp_path / explain.MAPS_FILE,
                            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                            differs=np.array([True]), map0=np.ones((1, 2, 2), np.float32))
    rows = pd.DataFrame({"file": ["a.jpg"], "true": ["cats"], "predicted": ["dogs"],
                         "probability": [0.7]})
    write(meta)
    found = explain.stored(tmp_path, rows, ["cats", "dogs"], (8, 8))
    assert found is not None and found.maps["last convolution (c, 2x2)"].shape == (1, 8, 8)
    assert found.note == "on 1 of the 1 photos the model predicts another class than the one mapped"
    write(meta | {"version": "an older explain.py"})
    assert explain.stored(tmp_path, rows, ["cats", "dogs"], (8, 8)) is None
    (tmp_path / explain.MAPS_FILE).write_bytes(b"PK\x03\x04 not a whole npz")
    assert explain.stored(tmp_path, rows, ["cats", "dogs"], (8, 8)) is None


def test_regions_of_a_known_map() -> None:
    heat = np.zeros((30, 30))
    heat[1:6, 1:6] = 1.0  # all the heat in the top-left ninth
    assert explain.where(heat) == ("top left", 1.0)
    assert explain.peak_region(heat) == "top left"
    assert explain.centre_share(heat) == 0.0
    heat = np.zeros((30, 30))
    heat[12:18, 12:18] = 1.0
    assert explain.where(heat)[0] == "centre" and explain.centre_share(heat) == 1.0
    assert explain.centre_share(np.ones((40, 40))) == pytest.approx(explain.CENTRE)
    assert explain.centre_share(np.zeros((8, 8))) == explain.CENTRE  # no heat: even
    assert explain.grid_shares(np.ones((9, 9))).sum() == pytest.approx(1.0)


def _predictions() -> pd.DataFrame:
    return pd.DataFrame({
        "file": [f"{i}.jpg" for i in range(8)],
        "true": ["cats", "cats", "cats", "cats", "dogs", "dogs", "dogs", "dogs"],
        "predicted": ["cats", "dogs", "cats", "dogs", "dogs", "cats", "dogs", "dogs"],
        "probability": [0.99, 0.7, 0.8, 0.9, 0.95, 0.6, 0.97, 0.55],
    }).assign(correct=lambda d: d["true"] == d["predicted"])


def test_picks_most_confident_mistakes_then_a_correct_photo_per_class() -> None:
    picked = explain.pick_photos(_predictions(), wrong=2, right=2)
    assert list(picked["file"]) == ["3.jpg", "1.jpg", "0.jpg", "6.jpg"]
    assert list(explain.pick_photos(_predictions(), wrong=5, right=1)["file"]) == [
        "3.jpg", "1.jpg", "5.jpg", "0.jpg"]


def test_common_photos_puts_the_hardest_first() -> None:
    a = _predictions()
    b = a.assign(correct=[True, True, True, False, True, True, True, True])
    assert explain.common_photos({"a": a, "b": b}, n=4) == ["3.jpg", "1.jpg", "5.jpg", "0.jpg"]


def _explanation() -> explain.Explanation:
    left, centre = np.zeros((2, 12, 12), np.float32), np.zeros((2, 12, 12), np.float32)
    left[:, 0:3, 0:3] = 1.0
    centre[:, 5:7, 5:7] = 1.0
    return explain.Explanation(
        files=["cats/cat.1.jpg", "dogs/dog.2.jpg"], true=["cats", "dogs"],
        predicted=["dogs", "dogs"], confidence=[0.87, 0.6],
        maps={"last convolution (conv2d)": left, "base, last block (conv)": centre})


def test_summary_and_alt_text_say_where_the_heat_is() -> None:
    table = explain.regions(_explanation())
    assert list(table["region"]) == ["top left", "top left", "centre", "centre"]
    summary = explain.summary(table)
    assert summary.loc["last convolution (conv2d)", "centre share"] == 0.0
    assert summary.loc["base, last block (conv)", "on mistakes"] == 1.0
    assert summary.loc["base, last block (conv)", "most heat in"] == "centre"
    text = explain.describe(_explanation(), 0)
    assert text == ("cat.1.jpg, a cats photo predicted dogs (87%, wrong): the heat of "
                    "last convolution (conv2d) lies mostly in the top left (100%), of base, "
                    "last block (conv) mostly in the centre (100%)")
    assert explain.subset(_explanation(), ["dogs/dog.2.jpg"]).files == ["dogs/dog.2.jpg"]


def test_a_two_by_two_map_has_no_centre_share() -> None:
    # stretched over the photo, a 2x2 map puts a quarter of its heat in the central
    # quarter whatever it holds, so it is no evidence of looking at the centre
    low = np.array([[[1.0, 0.0], [0.0, 0.0]]], np.float32)
    assert explain.centre_share(explain.upsample(low, (40, 40))[0]) == pytest.approx(0.25)
    coarse = explain.Explanation(["a.jpg"], ["cats"], ["cats"], [0.9],
                                 {"m": explain.upsample(low, (40, 40))}, sizes={"m": (2, 2)})
    row = explain.regions(coarse).iloc[0]
    assert np.isnan(row["centre share"]) and row["region"] == "top left"


def test_a_map_without_heat_is_nowhere_and_left_out_of_the_shares() -> None:
    maps = np.zeros((2, 12, 12), np.float32)
    maps[1, 0:3, 0:3] = 1.0  # the second photo has heat, the first none
    e = explain.Explanation(["a.jpg", "b.jpg"], ["cats", "cats"], ["cats", "dogs"],
                            [0.9, 0.8], {"m": maps})
    table = explain.regions(e)
    assert list(table["region"]) == ["nowhere", "top left"]
    row = explain.summary(table).loc["m"]
    assert row["with heat"] == 1 and row["centre share"] == 0.0
    assert row["most heat in"] == "top left" and np.isnan(row["on correct"])
    assert explain.describe(e, 0).endswith("the heat of m lies nowhere (no positive evidence)")
