"""Pure table functions: run records and data sets in, pandas DataFrames out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .data import Dataset

SETTLE_EPOCHS = 5  # "the validation accuracy settles between ..." = min/max over these


def class_counts(dataset: Dataset) -> pd.DataFrame:
    """Images per class in each split, with totals."""
    rows = {}
    for name, split in dataset.splits.items():
        labels = np.asarray(split.labels, dtype=int)
        counts = np.bincount(labels, minlength=len(dataset.class_names))
        rows[name] = dict(zip(dataset.class_names, counts.tolist(), strict=True))
    df = pd.DataFrame(rows).T
    df["total"] = df.sum(axis=1)
    df.index.name = "split"
    return df


def baseline_accuracy(labels: Sequence[int]) -> float:
    """Accuracy of always guessing the most common class."""
    counts = np.bincount(np.asarray(labels, dtype=int))
    return float(counts.max() / counts.sum())


def settle_range(history: Mapping[str, Sequence[float]], metric: str = "val_accuracy",
                 last: int = SETTLE_EPOCHS) -> tuple[float, float]:
    """Min and max of a metric over the last `last` epochs."""
    values = list(history[metric])[-last:]
    if not values:
        raise ValueError(f"history has no values for {metric!r}")
    return float(min(values)), float(max(values))


def run_summary(record: Mapping[str, Any], title: str | None = None) -> dict[str, Any]:
    """One comparison row from a run record, named by the model's title."""
    h = record["history"]
    lo, hi = settle_range(h)
    return {
        "model": title or record["model"],
        "total params": record["params"]["total"],
        "trainable params": record["params"]["trainable"],
        "epochs": record["epochs"],
        "train time (s)": record["train_seconds"],
        "best val acc": max(h["val_accuracy"]),
        "final val acc": h["val_accuracy"][-1],
        "settled val acc": f"{lo:.1%}–{hi:.1%}",
        "train−val gap": h["accuracy"][-1] - h["val_accuracy"][-1],
        "test loss": record["test"]["loss"],
        "test acc": record["test"]["accuracy"],
    }


def comparison_table(records: Sequence[Mapping[str, Any]], baseline: float,
                     titles: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per model (named by titles[model]), sorted by test accuracy (best first),
    plus the baseline row."""
    titles = titles or {}
    df = pd.DataFrame([run_summary(r, titles.get(r["model"])) for r in records])
    df = df.sort_values(["test acc", "best val acc"], ascending=False, kind="stable")
    base = {c: None for c in df.columns} | {
        "model": "Baseline (majority class)", "best val acc": baseline, "final val acc": baseline,
        "test acc": baseline, "total params": 0, "trainable params": 0}
    df = pd.concat([df, pd.DataFrame([base])], ignore_index=True)
    return df.set_index("model")


BEST = {"best val acc": max, "final val acc": max, "test acc": max, "test loss": min,
        "train time (s)": min}


def best_cells(df: pd.DataFrame) -> dict[str, Any]:
    """The best value of each rankable column among the model rows (not the baseline)."""
    models = df[~df.index.str.startswith("Baseline")]
    return {col: pick(models[col].dropna()) for col, pick in BEST.items() if col in models}


def predictions(record: Mapping[str, Any]) -> pd.DataFrame:
    """Test-set predictions: file, true and predicted label, probability of the prediction."""
    names = record["class_names"]
    prob = np.asarray(record["predictions"]["prob"], dtype=float)
    pred = prob.argmax(axis=1)
    true = np.asarray(record["predictions"]["true"], dtype=int)
    return pd.DataFrame({
        "file": record["predictions"]["files"],
        "true": [names[i] for i in true],
        "predicted": [names[i] for i in pred],
        "probability": prob[np.arange(len(pred)), pred],
        "correct": pred == true,
    })


def confusion_matrix(true: Sequence[str], predicted: Sequence[str],
                     labels: Sequence[str]) -> pd.DataFrame:
    """Counts: rows are true classes, columns predicted ones."""
    df = pd.DataFrame(0, index=pd.Index(labels, name="true"),
                      columns=pd.Index(labels, name="predicted"))
    for t, p in zip(true, predicted, strict=True):
        df.loc[t, p] += 1
    return df


def confusion_rates(counts: pd.DataFrame) -> pd.DataFrame:
    """Row-normalised confusion matrix (recall per true class)."""
    totals = counts.sum(axis=1).replace(0, np.nan)
    return counts.div(totals, axis=0).fillna(0.0)


def misclassified(record: Mapping[str, Any]) -> pd.DataFrame:
    """The test photos a model got wrong, most confident mistakes first."""
    df = predictions(record)
    return df[~df["correct"]].sort_values("probability", ascending=False).reset_index(drop=True)


def layer_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """The model's layers as its Keras summary lists them: type, output shape, parameters,
    trainable parameters (the totals are parameter_totals())."""
    rows = [{"layer": r["name"], "type": r["type"] + (" (frozen)" if r["frozen"] else ""),
             "output shape": "(" + ", ".join("None" if d is None else str(d)
                                             for d in r["output_shape"]) + ")",
             "params": r["params"], "trainable": r["trainable"]} for r in record["layers"]]
    return pd.DataFrame(rows).set_index("layer")


def parameter_totals(record: Mapping[str, Any]) -> str:
    """'Total params: N · trainable: N · non-trainable: N (of which frozen: N)', the model's
    own weights, never the optimizer's."""
    p = record["params"]
    text = (f"Total params: {p['total']:,} · trainable: {p['trainable']:,} · "
            f"non-trainable: {p['non_trainable']:,}")
    frozen = p["frozen"]
    bn = p["non_trainable"] - frozen
    parts = ([f"{frozen:,} in frozen layers"] if frozen else []) + (
        [f"{bn:,} BatchNorm moving statistics"] if bn else [])
    return text + (f" ({', '.join(parts)})" if parts else "")
