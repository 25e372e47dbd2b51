import math

import pandas as pd
import pytest

from catdog_report import stats, tables


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
        "images": {"train": 40, "validation": 200, "test": 5},
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


def test_accuracies_carry_wilson_intervals_from_their_counts() -> None:
    recs = [record("model_one", [0.6, 0.655], [0.7, 0.8], 0.6),
            record("model_four", [0.9, 0.935], [0.9, 0.95], 0.8)]
    table = tables.comparison_table(recs, 0.6, {"model_one": "One", "model_four": "Four"})
    assert table.loc["Four", "test n"] == 5 and table.loc["Four", "val n"] == 200
    shown = tables.with_intervals(table, tables.best_cells(table))
    joined = "\u2060–\u2060"  # the interval wraps only at its space
    assert shown.loc["Four", "final val acc"] == f"**93.5% (89.2{joined}96.2)**"  # 187 of 200
    assert shown.loc["One", "test acc"] == f"60.0% (23.1{joined}88.2)"  # 3 of 5
    assert shown.loc["Baseline (majority class)", "best val acc"] == "60.0%"  # no count
    assert "test n" not in shown and "val n" not in shown


def _right(pattern: str) -> dict:
    """A record whose correctness on photos a..e follows pattern ('1' right, '0' wrong)."""
    true = [0, 0, 1, 1, 1]
    prob = [[0.9, 0.1] if (t == 0) == (c == "1") else [0.1, 0.9]
            for t, c in zip(true, pattern, strict=True)]
    rec = record("m", [0.5], [0.5], pattern.count("1") / 5)
    rec["predictions"] = {"files": list("abcde"), "true": true, "prob": prob}
    return rec


def test_paired_tests_pool_seeds_and_align_photos() -> None:
    recs = {"A": [_right("11111"), _right("11110")], "B": [_right("00001"), _right("00000")]}
    assert tables.correctness(recs["A"][1]) == {"a": True, "b": True, "c": True, "d": True,
                                                "e": False}
    p = stats.mcnemar_matrix(tables.paired_correctness(recs))
    # pooled discordant pairs: A right / B wrong 4 + 4 = 8, A wrong / B right 0 + 0 = 0
    assert p.loc["A", "B"] == pytest.approx(2 / 2**8) and p.loc["B", "A"] == p.loc["A", "B"]
    assert math.isnan(p.loc["A", "A"])
    other = record("m", [0.5], [0.5], 0.5)
    other["predictions"]["files"] = list("vwxyz")
    with pytest.raises(ValueError, match="other test photos"):
        tables.paired_correctness({"A": recs["A"], "C": [other]})


def test_seed_table_and_reproduction_verdicts() -> None:
    from catdog_report.study import Claim

    runs = {"model_one": [record("model_one", [0.6] * 4 + [0.62, 0.64], [0.9] * 6, 0.6),
                          record("model_one", [0.6] * 4 + [0.63, 0.66], [0.9] * 6, 0.8)]}
    seeds = tables.seed_table(runs)
    assert seeds.loc["model_one", "seeds"] == 2
    assert seeds.loc["model_one", "test acc mean ± sd"] == "70.0% ± 14.1%"
    assert seeds.loc["model_one", "test acc min–max"] == "60.0%–80.0%"
    claims = [Claim("model_one", "val_accuracy", 0.62, 0.65, "62-65"),
              Claim("model_one", "test_accuracy", 0.985, 0.995, "99", "leaky split"),
              Claim("model_two", "val_accuracy", 0.5, 0.6, "no run: no row")]
    rows = tables.reproduction_table(claims, runs, {"model_one": "Model one"})
    assert list(rows["verdict"]) == ["inside", "below"] and len(rows) == 2
    assert rows.iloc[0]["this build"].startswith("60.0%–66.0% over the last 5 epochs")
    assert rows.iloc[1]["this build"] == "70.0% (39.7–89.2)"  # 7 of 10 pooled photos
    assert rows.iloc[1]["known reason"] == "leaky split"


def test_layer_table_and_totals_are_the_models_own() -> None:
    rec = {"layers": [
        {"name": "conv", "type": "Conv2D", "output_shape": [None, 8, 8, 4], "params": 112,
         "trainable": 112, "frozen": False},
        {"name": "base", "type": "Functional", "output_shape": [None, 2, 2, 8], "params": 900,
         "trainable": 0, "frozen": True}],
        "params": {"total": 1028, "trainable": 120, "non_trainable": 908, "frozen": 900}}
    df = tables.layer_table(rec)
    assert list(df.index) == ["conv", "base"]
    assert df.loc["base", "type"] == "Functional (frozen)"
    assert df.loc["conv", "output shape"] == "(None, 8, 8, 4)"
    assert tables.parameter_totals(rec) == (
        "Total params: 1,028 · trainable: 120 · non-trainable: 908 (900 in frozen layers, "
        "8 BatchNorm moving statistics)")
