import math

import pandas as pd
import pytest

from catdog_report import tables


def record(name: str, val: list[float], train: list[float], test_acc: float,
           params: int = 1000, seconds: float = 10.0) -> dict:
    """A hand-made run record."""
    return {
        "model": name, "epochs": len(val), "train_seconds": seconds,
        "params": {"total": params, "trainable": params // 2},
        "history": {"val_accuracy": val, "accuracy": train,
                    "loss": [1.0] * len(val), "val_loss": [1.0] * len(val)},
        "test": {"loss": 1 - test_acc, "accuracy": test_acc},
        "class_names": ["cats", "dogs"],
        "predictions": {"files": ["a", "b", "c", "d", "e"], "true": [0, 0, 1, 1, 1],
                        "prob": [[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]]},
    }


def test_settle_range_is_min_max_of_last_five() -> None:
    h = {"val_accuracy": [0.1, 0.9, 0.62, 0.65, 0.63, 0.64, 0.62]}
    assert tables.settle_range(h) == (0.62, 0.65)
    assert tables.settle_range(h, last=2) == (0.62, 0.64)
    with pytest.raises(ValueError):
        tables.settle_range({"val_accuracy": []})


def test_comparison_table_from_known_records() -> None:
    recs = [
        record("model_one", [0.5, 0.55, 0.62, 0.65, 0.63, 0.64, 0.64], [0.6] * 6 + [0.95], 0.64,
               params=2_711_042, seconds=400),
        record("model_four", [0.9, 0.97, 0.98], [0.9, 0.95, 0.97], 0.985, params=3_034_914,
               seconds=300),
    ]
    df = tables.comparison_table(recs, baseline=0.5,
                                 titles={"model_one": "Model one", "model_four": "Model four"})
    assert list(df.index) == ["Model four", "Model one", "Baseline (majority class)"]
    one = df.loc["Model one"]
    assert one["best val acc"] == 0.65 and one["final val acc"] == 0.64
    assert one["settled val acc"] == "62.0%–65.0%"
    assert math.isclose(one["train−val gap"], 0.95 - 0.64)
    assert one["total params"] == 2_711_042 and one["epochs"] == 7
    assert df.loc["Baseline (majority class)", "test acc"] == 0.5
    best = tables.best_cells(df)
    assert best["test acc"] == 0.985 and best["train time (s)"] == 300
    assert best["test loss"] == pytest.approx(0.015)


def test_confusion_matrix_against_hand_count() -> None:
    preds = tables.predictions(record("m", [0.5], [0.5], 0.5))
    # true: cat cat dog dog dog; predicted: cat dog dog cat dog
    assert list(preds["predicted"]) == ["cats", "dogs", "dogs", "cats", "dogs"]
    cm = tables.confusion_matrix(preds["true"], preds["predicted"], ["cats", "dogs"])
    assert cm.to_numpy().tolist() == [[1, 1], [1, 2]]
    rates = tables.confusion_rates(cm)
    assert rates.loc["dogs", "dogs"] == pytest.approx(2 / 3)
    assert rates.loc["cats", "dogs"] == pytest.approx(0.5)


def test_misclassified_most_confident_first() -> None:
    wrong = tables.misclassified(record("m", [0.5], [0.5], 0.5))
    assert list(wrong["file"]) == ["b", "d"]
    assert wrong["probability"].tolist() == pytest.approx([0.7, 0.6])


def test_class_counts_and_baseline(settings) -> None:  # type: ignore[no-untyped-def]
    from catdog_report import data

    ds = data.scan(settings, settings.data_dir)
    counts = tables.class_counts(ds)
    assert isinstance(counts, pd.DataFrame)
    assert counts.loc["train"].tolist() == [12, 12, 24]
    assert counts.loc["test", "total"] == 4
    assert tables.baseline_accuracy(ds.validation.labels) == 0.5
    assert tables.baseline_accuracy([0, 0, 0, 1]) == 0.75
