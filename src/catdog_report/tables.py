"""Pure table functions: run records and data sets in, pandas DataFrames out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

import numpy as np
import pandas as pd

from . import stats
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


def run_summary(records: Sequence[Mapping[str, Any]], title: str | None = None) -> dict[str, Any]:
    """One comparison row from a model's run records (one per seed), named by its title:
    accuracies, gap, loss and training time are means over the seeds; "settled val acc"
    is the min–max over the last epochs of every seed (a spread, not an interval)."""
    first = records[0]
    lows, highs = zip(*(settle_range(r["history"]) for r in records), strict=True)
    return {
        "model": title or first["model"],
        "seeds": len(records),
        "total params": first["params"]["total"],
        "trainable params": first["params"]["trainable"],
        "epochs": first["epochs"],
        "train time (s)": fmean(r["train_seconds"] for r in records),
        "final val acc": fmean(r["history"]["val_accuracy"][-1] for r in records),
        "settled val acc": f"{min(lows):.1%}–{max(highs):.1%}",
        "train−val gap": fmean(r["history"]["accuracy"][-1] - r["history"]["val_accuracy"][-1]
                               for r in records),
        "test loss": fmean(r["test"]["loss"] for r in records),
        "test acc": fmean(r["test"]["accuracy"] for r in records),
        "test n": len(first["predictions"]["true"]),
        "val n": first["images"]["validation"],
        "precision": first.get("precision", "float32"),
    }


def comparison_table(records: Mapping[str, Sequence[Mapping[str, Any]]], baseline: float,
                     titles: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per model (model name → its runs' records, one per seed; the row named by
    titles[model]), sorted by test accuracy, the seed mean (best first), plus the baseline
    row. With several seeds every accuracy is the mean over the model's seeds, so the table
    ranks by the number it prints."""
    titles = titles or {}
    df = pd.DataFrame([run_summary(runs, titles.get(name)) for name, runs in records.items()])
    df = df.sort_values(["test acc", "final val acc"], ascending=False, kind="stable")
    base = {c: None for c in df.columns} | {
        "model": "Baseline (majority class)", "final val acc": baseline,
        "test acc": baseline, "total params": 0, "trainable params": 0,
        "test n": df["test n"].iloc[0], "val n": None}
    df = pd.concat([df, pd.DataFrame([base])], ignore_index=True)
    return df.set_index("model")


BEST = {"final val acc": max, "test acc": max, "test loss": min,
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


ACCURACY = {"final val acc": "val n", "test acc": "test n"}


def with_intervals(table: pd.DataFrame, bold: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The accuracy columns as text with their 95% Wilson interval on the number of photos
    each was measured on, `93.5% (89.2–96.2)` (a mean over seeds on the same photos gets the
    interval of its photo count: the true sample size), best values in bold; other columns as
    they are."""
    bold = bold or {}
    out = table.drop(columns=[c for c in ("test n", "val n") if c in table]).astype(object)
    for col, n_col in ACCURACY.items():
        for idx in table.index:
            value, n = table.loc[idx, col], table.loc[idx, n_col]
            if value is None or pd.isna(value):
                continue
            text = (stats.format_accuracy(value, int(n))
                    .replace("–", "\u2060–\u2060")  # a narrow column wraps at the space only
                    if n is not None and not pd.isna(n) else f"{value:.1%}")
            out.loc[idx, col] = f"**{text}**" if col in bold and value == bold[col] else text
    return out


def correctness(record: Mapping[str, Any]) -> dict[str, bool]:
    """Per test photo (by file), whether the run predicted its class."""
    pred = np.asarray(record["predictions"]["prob"], dtype=float).argmax(axis=1)
    true = record["predictions"]["true"]
    return {f: bool(p == t) for f, p, t in zip(record["predictions"]["files"], pred, true,
                                                strict=True)}


def paired_correctness(records: Mapping[str, Sequence[Mapping[str, Any]]]
                       ) -> dict[str, list[list[bool]]]:
    """Model → per seed, correctness on the same test photos in the same order."""
    files: list[str] | None = None
    out: dict[str, list[list[bool]]] = {}
    for model, runs in records.items():
        for record in runs:
            right = correctness(record)
            files = files or sorted(right)
            if sorted(right) != files:
                raise ValueError(f"{model}'s runs were scored on other test photos; "
                                 "paired tests need the same test split")
            out.setdefault(model, []).append([right[f] for f in files])
    return out


def seed_table(records: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """Per model, over its seeds: the mean test and final validation accuracy with the 95%
    Wilson interval of its photo count, the standard deviation over seeds and the min–max
    (spreads over seeds: descriptions, not intervals)."""
    rows = []
    for model, runs in records.items():
        row: dict[str, Any] = {"model": model, "seeds": len(runs)}
        for label, values, n in (
                ("test acc", [r["test"]["accuracy"] for r in runs],
                 len(runs[0]["predictions"]["true"])),
                ("final val acc", [r["history"]["val_accuracy"][-1] for r in runs],
                 runs[0]["images"]["validation"])):
            s = stats.mean_std_range(values)
            row[f"{label} mean"] = stats.format_accuracy(s["mean"], n)
            row[f"{label} sd over seeds"] = "–" if np.isnan(s["std"]) else f"{s['std']:.1%}"
            row[f"{label} min–max"] = f"{s['min']:.1%}–{s['max']:.1%}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def reproduction_table(claims: Sequence[Any], records: Mapping[str, Sequence[Mapping[str, Any]]],
                       titles: Mapping[str, str], profile: str) -> pd.DataFrame:
    """Each claim of the original study beside this build's number and a verdict.

    This build's number is the accuracy the claim is about, the mean over the model's seeds
    (validation: the final epoch's), with the 95% Wilson interval of the photos it was
    measured on (the validation or test photo count, however many seeds: the same photos
    recur). The verdict is "consistent with" when the claimed range overlaps that interval,
    else "below" or "above" it; a claim about another profile than this build's gets no
    verdict (the build is a preview of it)."""
    rows = []
    for claim in claims:
        runs = records.get(claim.model, [])
        if not runs:
            continue
        if claim.metric == "val_accuracy":
            n = runs[0]["images"]["validation"]
            acc = fmean(r["history"]["val_accuracy"][-1] for r in runs)
        else:
            n = len(runs[0]["predictions"]["true"])
            acc = fmean(r["test"]["accuracy"] for r in runs)
        low, high = stats.accuracy_interval(acc, n)
        seeds = f", mean of {len(runs)} seeds" if len(runs) > 1 else ""
        rows.append({"model": titles.get(claim.model, claim.model),
                     "metric": claim.metric.replace("_", " "),
                     "claimed": f"{claim.low:.1%}–{claim.high:.1%}" + (
                         f" ({claim.text})" if claim.text else ""),
                     "this build": f"{stats.format_interval(acc, low, high)} on {n} photos{seeds}",
                     "verdict": (stats.verdict(low, high, claim.low, claim.high)
                                 if claim.applies_to(profile) else ""),
                     "claim's profile": claim.profile or "any",
                     "known reason": claim.reason})
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()
