"""Where a trained model looks: Grad-CAM class-activation maps (Selvaraju et al. 2017, as
in the Keras example "Grad-CAM class activation visualization") and where their heat lies.

Arrays and DataFrames in and out; TensorFlow is imported only by the functions that run a
model. A map is found for every convolution the model has a use for: its own last
convolution layer (found by layer type, never by name) and, for each nested model that
holds convolutions (a pretrained base), that model's output: the output of its last block.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cache import file_digest

CONV_TYPES = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose")
REGIONS = (("top left", "top", "top right"), ("left", "centre", "right"),
           ("bottom left", "bottom", "bottom right"))
CENTRE = 0.25  # the central box spans the middle half of each side: a quarter of the photo
BATCH = 32
MAPS_FILE = "gradcam.npz"  # a run entry's maps, written where it trains (store_maps)


@dataclass(frozen=True)
class Target:
    """A map to compute: a top-level layer whose output is the map, and its label."""

    label: str
    layer: str
    nested: bool


@dataclass(frozen=True)
class Explanation:
    """Grad-CAM maps of some photos: per target label, (photos, height, width) in [0, 1] at
    the photos' size, and the size the layer computed them at; `note` says why a model has
    no (or fewer) maps."""

    files: list[str]
    true: list[str]
    predicted: list[str]
    confidence: list[float]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    note: str = ""
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def _is_conv(layer: Any) -> bool:
    """A 2-D convolution of any kind Keras has (by class, including subclasses)."""
    return any(cls.__name__ in CONV_TYPES and cls.__module__.startswith("keras")
               for cls in type(layer).__mro__)


def _sublayers(layer: Any) -> list[Any]:
    return [s for s in getattr(layer, "layers", []) if type(s).__name__ != "InputLayer"]


def _last_conv(layer: Any) -> Any | None:
    """The last convolution inside a (nested) model, depth first; None when it has none."""
    for inner in reversed(_sublayers(layer)):
        if _is_conv(inner):
            return inner
        found = _last_conv(inner)
        if found is not None:
            return found
    return None


def _spatial(layer: Any) -> bool:
    """Whether a layer's output is a batch of 2-D maps (batch, height, width, channels)."""
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def _size(layer: Any) -> str:
    """A layer's map size, "5x5"."""
    _, h, w, _ = layer.output.shape
    return f"{h}x{w}"


def conv_targets(model: Any) -> list[Target]:
    """The maps a model has: its own last convolution layer, then each nested model holding
    convolutions whose output is spatial (its last block's output), in layer order. Each
    label names the layer and the map's size."""
    top = _sublayers(model)
    own = [layer for layer in top if _is_conv(layer)]
    targets = ([Target(f"last convolution ({own[-1].name}, {_size(own[-1])})", own[-1].name,
                       False)] if own else [])
    for layer in top:
        inner = _last_conv(layer) if _sublayers(layer) else None
        if inner is not None and _spatial(layer):
            targets.append(Target(f"last block of {layer.name} ({inner.name}, "
                                  f"{_size(layer)})", layer.name, True))
    return targets


def _chain(model: Any) -> list[Any]:
    """The model's top-level layers in order (a Sequential model, or a functional one
    whose layers each feed the next; the caller checks that on real input)."""
    return _sublayers(model)


def _run_chain(layers: Sequence[Any], x: Any, watch: set[str], tape: Any) -> tuple[Any, dict]:
    """Call the layers one after another in inference mode, watching the named outputs."""
    acts = {}
    for layer in layers:
        x = layer(x, training=False)
        if layer.name in watch:
            tape.watch(x)
            acts[layer.name] = x
    return x, acts


def _linked_in_order(model: Any) -> bool:
    """Whether the model's graph says it is a chain: each top-level layer called once, on
    the previous one's output alone (no other argument but an unset mask, and the training
    flag, which the model's own call in inference mode overrides), the last one's output
    the model's only output."""
    try:
        previous = list(model.inputs)
        for layer in _chain(model):
            nodes = layer._inbound_nodes
            args = nodes[0].arguments if len(nodes) == 1 else None
            if (args is None or [id(t) for t in args.keras_tensors] != [id(t) for t in previous]
                    or len(args.args) != 1 or set(args.kwargs) - {"training", "mask"}
                    or args.kwargs.get("mask") is not None):
                return False
            previous = nodes[0].outputs
        return [id(t) for t in previous] == [id(t) for t in model.outputs]
    except (AttributeError, IndexError, TypeError, ValueError):
        return False


def _is_chain(model: Any, x: np.ndarray) -> bool:
    """Whether calling the top-level layers in order gives the model's own output: read
    from its graph where it says so, else tried on a photo."""
    import tensorflow as tf

    if _linked_in_order(model):
        return True
    try:
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            out, _ = _run_chain(_chain(model), tf.constant(x), set(), tape)
        want = np.asarray(model(x, training=False))
        return bool(np.allclose(np.asarray(out), want, rtol=1e-4, atol=1e-4))
    except Exception:  # noqa: BLE001 - any failure means "not a chain"
        return False


def _cam(acts: Any, grads: Any) -> np.ndarray:
    """Grad-CAM: channels weighted by their mean gradient, summed, ReLU, scaled to [0, 1]
    per photo (a photo with no positive evidence gets a map of zeros)."""
    a, g = np.asarray(acts, dtype=np.float64), np.asarray(grads, dtype=np.float64)
    heat = np.maximum(np.einsum("nhwc,nc->nhw", a, g.mean(axis=(1, 2))), 0.0)
    top = heat.max(axis=(1, 2), keepdims=True)
    return np.divide(heat, top, out=np.zeros_like(heat), where=top > 0).astype(np.float32)


Classes = Sequence[int] | Callable[[np.ndarray], np.ndarray]


def gradcam(model: Any, images: np.ndarray, classes: Sequence[int],
            targets: Sequence[Target] | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Grad-CAM maps of the given classes' outputs, per target label: (photos, h, w) at each
    layer's resolution; and a note naming the targets that could not be computed and the
    photos on which the model predicts another class than the one given (for the
    predictions of a run record: its weights did not load as they were trained)."""
    maps, skipped, differs, _ = _gradcam(model, images, classes, targets)
    return maps, _note(skipped, differs)


def _note(skipped: str, differs: np.ndarray) -> str:
    """The note of some maps: the targets left out, and on how many of the photos the
    model predicts another class than the one mapped."""
    differ = int(np.count_nonzero(differs))
    return "; ".join(n for n in (skipped, f"on {differ} of the {len(differs)} photos the model "
                                          "predicts another class than the one mapped"
                                 if differ else "") if n)


def _gradcam(model: Any, images: np.ndarray, classes: Classes,
             targets: Sequence[Target] | None = None
             ) -> tuple[dict[str, np.ndarray], str, np.ndarray, np.ndarray | None]:
    """gradcam's maps, the note on the targets left out, per photo whether the model
    predicts another class than the one mapped, and the model's outputs on the photos (None
    when it has no map). classes may be a function of a batch's outputs (the predicted
    classes): the forward pass that maps them then also predicts them."""
    import keras
    import tensorflow as tf

    targets = list(conv_targets(model) if targets is None else targets)
    x = np.asarray(images, dtype=np.float32)
    if not targets or len(x) == 0:
        return {}, "", np.zeros(len(x), bool), None
    note = ""
    chain = _is_chain(model, x[:1])
    if not chain and any(t.nested for t in targets):
        skipped = [t for t in targets if t.nested]
        note = ("the maps of " + ", ".join(t.layer for t in skipped) + " are left out: the "
                "model is not a chain of layers, so a nested model's output cannot be reached")
        targets = [t for t in targets if not t.nested]
    out: dict[str, list[np.ndarray]] = {t.label: [] for t in targets}
    grad_model, differs, outputs = None, [], []
    if not chain:
        grad_model = keras.Model(model.inputs, [model.get_layer(t.layer).output for t in targets]
                                 + [model.outputs[0]])
    for start in range(0, len(x), BATCH):
        xb = tf.constant(x[start:start + BATCH])
        # a chain's maps watch its layers' outputs: the tape records no more than the ops
        # after them (a frozen base's backward pass was a third of model four's maps'
        # time); another model's outputs are reached through the variables it reads
        with tf.GradientTape(watch_accessed_variables=not chain) as tape:
            if chain:
                scores, by_name = _run_chain(_chain(model), xb, {t.layer for t in targets}, tape)
                acts = [by_name[t.layer] for t in targets]
            else:
                *acts, scores = grad_model(xb, training=False)  # type: ignore[misc]
            outputs.append(np.asarray(scores, np.float32))
            cls = np.asarray(classes(outputs[-1]) if callable(classes)
                             else classes[start:start + BATCH], np.int64)
            pick = tf.one_hot(cls, depth=int(model.outputs[0].shape[-1]))
            chosen = tf.reduce_sum(tf.cast(scores, tf.float32) * pick)
        grads = tape.gradient(chosen, acts)
        for t, a, g in zip(targets, acts, grads, strict=True):
            out[t.label].append(_cam(a, g))
        differs.append(outputs[-1].argmax(axis=1) != cls)
    return ({label: np.concatenate(maps) for label, maps in out.items()}, note,
            np.concatenate(differs), np.concatenate(outputs))


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Maps (n, h, w) resized bilinearly to (n, height, width), still in [0, 1]."""
    from PIL import Image

    height, width = size
    return np.stack([np.clip(np.asarray(Image.fromarray(m.astype(np.float32), mode="F")
                                        .resize((width, height), Image.Resampling.BILINEAR)),
                             0.0, 1.0) for m in maps]) if len(maps) else np.zeros((0, *size))


def explain(model: Any, images: np.ndarray, predictions: pd.DataFrame,
            class_names: Sequence[str]) -> Explanation:
    """The Grad-CAM maps of a model's predicted class on each photo, at the photos' size.
    `predictions` has one row per photo: file, true, predicted, probability (as
    tables.predictions gives them)."""
    rows = predictions.reset_index(drop=True)
    if not conv_targets(model):
        return Explanation(**_base(rows), note="it has no convolution layer")
    classes = [list(class_names).index(p) for p in rows["predicted"]]
    maps, skipped, differs, _ = _gradcam(model, np.asarray(images), classes)
    return _explanation(rows, maps, _note(skipped, differs), tuple(np.asarray(images).shape[1:3]))


def _base(rows: pd.DataFrame) -> dict[str, Any]:
    return {"files": list(rows["file"]), "true": list(rows["true"]),
            "predicted": list(rows["predicted"]),
            "confidence": [float(p) for p in rows["probability"]]}


def _explanation(rows: pd.DataFrame, maps: Mapping[str, np.ndarray], note: str,
                 size: tuple[int, ...]) -> Explanation:
    """An Explanation of the prediction rows from maps at their layers' resolution."""
    return Explanation(**_base(rows), maps={k: upsample(v, size) for k, v in maps.items()},  # type: ignore[arg-type]
                       note=note, sizes={k: (v.shape[1], v.shape[2]) for k, v in maps.items()})


def version() -> str:
    """A digest of this module's source: maps stored by another version are not used."""
    return file_digest(Path(__file__))


def predict(model: Any, images: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """The model's outputs on the photos, from eager calls in inference mode batch by batch
    (evaluate() and predict() each trace a graph for this one pass, about 0.5 s a model)."""
    x = np.asarray(images, np.float32)
    parts = [np.asarray(model(x[i:i + batch], training=False), np.float32)
             for i in range(0, len(x), batch)]
    return (np.concatenate(parts) if parts
            else np.zeros((0, int(model.outputs[0].shape[-1])), np.float32))


def store_maps(folder: Path, model: Any, images: np.ndarray, files: Sequence[str],
               classes: Classes) -> np.ndarray | None:
    """Compute the Grad-CAM maps of the given class (a run's predicted class) on every photo
    and write them to folder/MAPS_FILE (a run entry being written: the training process
    has the model and TensorFlow at hand, so its pages need neither). classes may be a
    function of a batch's outputs: the maps' forward pass then predicts them too. Returns the
    model's outputs on the photos."""
    targets = conv_targets(model)
    maps, skipped, differs, outputs = (_gradcam(model, images, classes, targets) if targets
                                       else ({}, "", np.zeros(len(files), bool), None))
    if outputs is None:
        outputs = predict(model, images)
    chosen = [int(c) for c in (classes(outputs) if callable(classes) else classes)]
    meta = {"version": version(), "files": list(files), "classes": chosen,
            "labels": list(maps), "skipped": skipped,
            "none": "" if targets else "it has no convolution layer"}
    arrays = {f"map{i}": np.asarray(m, np.float32) for i, m in enumerate(maps.values())}
    with open(folder / MAPS_FILE, "wb") as out:
        np.savez_compressed(out, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                            differs=np.asarray(differs, bool), **arrays)
    return outputs


def stored(folder: Path | None, rows: pd.DataFrame, class_names: Sequence[str],
           size: tuple[int, int]) -> Explanation | None:
    """The Explanation of the prediction rows from the maps stored with a run (store_maps);
    None when it has none, they come from another version of this module, or they do not
    map these rows' predicted classes (then the caller computes them from the weights)."""
    path = folder / MAPS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes())
            if meta.get("version") != version():
                return None
            index = {f: i for i, f in enumerate(meta["files"])}
            rows = rows.reset_index(drop=True)
            at = [index[f] for f in rows["file"]]
            if [meta["classes"][i] for i in at] != [list(class_names).index(p)
                                                    for p in rows["predicted"]]:
                return None
            maps = {label: npz[f"map{i}"][at] for i, label in enumerate(meta["labels"])}
            differs = npz["differs"][at]
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile):
        return None  # unreadable or not of these photos: computed from the weights instead
    if meta["none"]:
        return Explanation(**_base(rows), note=meta["none"])
    return _explanation(rows, maps, _note(meta["skipped"], differs), size)


def grid_shares(heat: np.ndarray) -> np.ndarray:
    """The share of a map's heat in each cell of a 3x3 grid over the photo (sums to 1; a
    map without heat counts as spread evenly)."""
    h, w = heat.shape
    rows, cols = np.array_split(np.arange(h), 3), np.array_split(np.arange(w), 3)
    sums = np.array([[heat[np.ix_(r, c)].sum() for c in cols] for r in rows], dtype=float)
    total = sums.sum()
    return sums / total if total > 0 else np.full((3, 3), 1 / 9)


def centre_share(heat: np.ndarray) -> float:
    """The share of a map's heat inside the central box (the middle half of each side, a
    quarter of the photo's area: 25% when the heat is spread evenly)."""
    h, w = heat.shape
    total = float(heat.sum())
    inner = float(heat[h // 4:h - h // 4, w // 4:w - w // 4].sum())
    return inner / total if total > 0 else CENTRE


def peak_region(heat: np.ndarray) -> str:
    """The cell of the 3x3 grid that holds the map's hottest point."""
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return REGIONS[min(3 * int(r) // heat.shape[0], 2)][min(3 * int(c) // heat.shape[1], 2)]


def where(heat: np.ndarray) -> tuple[str, float]:
    """The 3x3 cell with the largest share of the heat, and that share."""
    shares = grid_shares(heat)
    r, c = np.unravel_index(int(np.argmax(shares)), shares.shape)
    return REGIONS[int(r)][int(c)], float(shares[r, c])


def regions(explanation: Explanation) -> pd.DataFrame:
    """One row per photo and map: file, map, whether the prediction is right, the share of
    heat in the central quarter, the 3x3 cell with most heat and its share, the peak's cell
    (a map without heat, no positive evidence anywhere, is "nowhere", its shares NaN; a map
    computed at 2x2 or less has no central-quarter share: stretched over the photo, it
    puts a quarter of its heat there whatever it shows)."""
    rows = []
    for label, maps in explanation.maps.items():
        coarse = min(explanation.sizes.get(label, (3, 3))) < 3
        for i, heat in enumerate(maps):
            cold = not heat.max() > 0
            cell, share = where(heat)
            rows.append({"file": explanation.files[i], "map": label,
                         "correct": explanation.true[i] == explanation.predicted[i],
                         "centre share": np.nan if cold or coarse else centre_share(heat),
                         "region": "nowhere" if cold else cell,
                         "region share": np.nan if cold else share,
                         "peak": "nowhere" if cold else peak_region(heat)})
    return pd.DataFrame(rows, columns=["file", "map", "correct", "centre share", "region",
                                       "region share", "peak"])


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per map: photos, those whose map has any heat, mean central-quarter share (all, on
    mistakes, on correct photos; over the maps with heat) and the 3x3 cell that most often
    holds the most heat."""
    out = {}
    for label, rows in table.groupby("map", sort=False):
        right, wrong = rows[rows["correct"]], rows[~rows["correct"]]
        out[label] = {
            "photos": len(rows),
            "with heat": int((rows["region"] != "nowhere").sum()),
            "centre share": float(rows["centre share"].mean()),
            "on mistakes": float(wrong["centre share"].mean()) if len(wrong) else np.nan,
            "on correct": float(right["centre share"].mean()) if len(right) else np.nan,
            "most heat in": _most_common(rows["region"]),
        }
    df = pd.DataFrame.from_dict(out, orient="index")
    df.index.name = "map"
    return df


def _most_common(cells: pd.Series) -> str:
    """The most frequent cell (ties by name), "nowhere" only when no map has heat."""
    warm = cells[cells != "nowhere"]
    counts = (warm if len(warm) else cells).value_counts().sort_index()
    return str(counts.sort_values(ascending=False, kind="stable").index[0])


def pick_photos(predictions: pd.DataFrame, wrong: int = 4, right: int = 2) -> pd.DataFrame:
    """The photos to explain for one model: its most confident mistakes (up to `wrong`),
    then for contrast its most confident correct photo of each class in turn (up to
    `right`)."""
    mistakes = (predictions[~predictions["correct"]]
                .sort_values(["probability", "file"], ascending=[False, True], kind="stable")
                .head(wrong))
    correct = predictions[predictions["correct"]].sort_values(
        ["probability", "file"], ascending=[False, True], kind="stable")
    ranked = correct.assign(rank=correct.groupby("true", sort=False).cumcount())
    contrast = ranked.sort_values(["rank", "true"], kind="stable").head(right)
    return pd.concat([mistakes, contrast.drop(columns="rank")]).reset_index(drop=True)


def common_photos(predictions: Mapping[str, pd.DataFrame], n: int = 4) -> list[str]:
    """The same few photos for every model: those the most models got wrong (the first
    `n - 1`, by file name among ties), then the photos every model got right to fill up."""
    frames = list(predictions.values())
    files = list(frames[0]["file"])
    wrong = sum(~frame.set_index("file").loc[files, "correct"].to_numpy(bool)
                for frame in frames)
    order = sorted(range(len(files)), key=lambda i: (-int(wrong[i]), files[i]))
    hard = [files[i] for i in order if wrong[i] > 0][:max(n - 1, 0)]
    easy = [files[i] for i in order if wrong[i] == 0]
    return (hard + easy)[:n]


def subset(explanation: Explanation, files: Sequence[str]) -> Explanation:
    """The same explanation restricted to some of its photos, in the given order."""
    index = [explanation.files.index(f) for f in files]
    return Explanation(files=[explanation.files[i] for i in index],
                       true=[explanation.true[i] for i in index],
                       predicted=[explanation.predicted[i] for i in index],
                       confidence=[explanation.confidence[i] for i in index],
                       maps={k: v[index] for k, v in explanation.maps.items()},
                       note=explanation.note, sizes=explanation.sizes)


def lies(heat: np.ndarray) -> str:
    """Where a map's heat lies, in words: "mostly in the top left (38%)"."""
    if not heat.max() > 0:
        return "nowhere (no positive evidence)"
    cell, share = where(heat)
    return f"mostly in the {cell} ({share:.0%})"


def describe(explanation: Explanation, i: int) -> str:
    """One photo in words, for alt text: its name, true and predicted class, confidence,
    and where the heat of each map mostly lies."""
    e = explanation
    right = "right" if e.true[i] == e.predicted[i] else "wrong"
    where_ = []
    for n, (label, maps) in enumerate(e.maps.items()):
        where_.append(f"{'the heat of ' if n == 0 else 'of '}{label} "
                      f"{'lies ' if n == 0 else ''}{lies(maps[i])}")
    return (f"{e.files[i].rsplit('/', 1)[-1]}, a {e.true[i]} photo predicted {e.predicted[i]} "
            f"({e.confidence[i]:.0%}, {right})" + (": " + ", ".join(where_) if where_ else ""))
