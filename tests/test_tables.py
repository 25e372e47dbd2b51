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
    df = tables.comparison_table({r["model"]: [r] for r in recs}, baseline=0.5,
                                 titles={"model_one": "Model one", "model_four": "Model four"})
    assert list(df.index) == ["Model four", "Model one", "Baseline (majority class)"]
    one = df.loc["Model one"]
    assert one["final val acc"] == 0.64 and "best val acc" not in df  # a max is biased up
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
    table = tables.comparison_table({r["model"]: [r] for r in recs}, 0.6,
                                    {"model_one": "One", "model_four": "Four"})
    assert table.loc["Four", "test n"] == 5 and table.loc["Four", "val n"] == 200
    shown = tables.with_intervals(table, tables.best_cells(table))
    joined = "\u2060–\u2060"  # the interval wraps only at its space
    assert shown.loc["Four", "final val acc"] == f"**93.5% (89.2{joined}96.2)**"  # 187 of 200
    assert shown.loc["One", "test acc"] == f"60.0% (23.1{joined}88.2)"  # 3 of 5
    assert shown.loc["Baseline (majority class)", "final val acc"] == "60.0%"  # no count
    assert "test n" not in shown and "val n" not in shown


def _right(pattern: str) -> dict:
    """A record whose correctness on photos a..e follows pattern ('1' right, '0' wrong)."""
    true = [0, 0, 1, 1, 1]
    prob = [[0.9, 0.1] if (t == 0) == (c == "1") else [0.1, 0.9]
            for t, c in zip(true, pattern, strict=True)]
    rec = record("m", [0.5], [0.5], pattern.count("1") / 5)
    rec["predictions"] = {"files": list("abcde"), "true": true, "prob": prob}
    return rec


def test_several_seeds_rank_by_the_seed_mean_the_table_prints() -> None:
    one = [record("model_one", [0.5, 0.6], [0.7, 0.9], 0.90),
           record("model_one", [0.5, 0.7], [0.7, 0.8], 0.50)]  # mean 0.70
    two = [record("model_two", [0.5, 0.8], [0.7, 0.9], 0.80)]  # one seed: 0.80
    table = tables.comparison_table({"model_one": one, "model_two": two}, 0.5)
    # seed 0 alone would put model_one first (0.90); the mean puts model_two first
    assert list(table.index[:2]) == ["model_two", "model_one"]
    row = table.loc["model_one"]
    assert row["test acc"] == pytest.approx(0.70) and row["final val acc"] == pytest.approx(0.65)
    assert row["seeds"] == 2 and row["settled val acc"] == "50.0%–70.0%"
    assert row["train−val gap"] == pytest.approx(((0.9 - 0.6) + (0.8 - 0.7)) / 2)
    assert tables.best_cells(table)["test acc"] == pytest.approx(0.80)


def test_paired_correctness_aligns_photos() -> None:
    recs = {"A": [_right("11111"), _right("11110")], "B": [_right("00001"), _right("00000")]}
    assert tables.correctness(recs["A"][1]) == {"a": True, "b": True, "c": True, "d": True,
                                                "e": False}
    correct = tables.paired_correctness(recs)
    assert correct["A"] == [[True] * 5, [True] * 4 + [False]]
    # each photo once (2 seeds each: 2 * right_a - 2 * right_b): a-d 2 vs 0, e 1 vs 1
    assert stats.photo_differences(correct["A"], correct["B"]) == [4, 4, 4, 4, 0]
    other = record("m", [0.5], [0.5], 0.5)
    other["predictions"]["files"] = list("vwxyz")
    with pytest.raises(ValueError, match="other test photos"):
        tables.paired_correctness({"A": recs["A"], "C": [other]})


def test_seed_table_gives_the_mean_its_interval_and_the_spread_none() -> None:
    runs = {"model_one": [record("model_one", [0.6] * 4 + [0.62, 0.64], [0.9] * 6, 0.6),
                          record("model_one", [0.6] * 4 + [0.63, 0.66], [0.9] * 6, 0.8)]}
    seeds = tables.seed_table(runs)
    row = seeds.loc["model_one"]
    assert row["seeds"] == 2
    assert row["test acc mean"] == stats.format_accuracy(0.7, 5)  # on the 5 photos, not 10
    assert row["test acc sd over seeds"] == "14.1%"
    assert row["test acc min–max"] == "60.0%–80.0%"
    assert row["final val acc mean"] == stats.format_accuracy(0.65, 200)


def test_reproduction_verdicts_use_the_true_photo_count() -> None:
    from catdog_report.study import Claim

    runs = {"model_one": [record("model_one", [0.6] * 4 + [0.62, 0.64], [0.9] * 6, 0.6),
                          record("model_one", [0.6] * 4 + [0.63, 0.66], [0.9] * 6, 0.8)]}
    claims = [Claim("model_one", "val_accuracy", 0.66, 0.70, "66-70", profile="full"),
              Claim("model_one", "test_accuracy", 0.90, 0.95, "90-95", "leaky split", "full"),
              Claim("model_two", "val_accuracy", 0.5, 0.6, "no run: no row", profile="full")]
    rows = tables.reproduction_table(claims, runs, {"model_one": "Model one"}, "full")
    assert len(rows) == 2
    # validation: the final epochs' mean, 65.0% of 200 photos: (58.2–71.3) overlaps 66–70
    assert rows.iloc[0]["this build"] == "65.0% (58.2–71.3) on 200 photos, mean of 2 seeds"
    assert rows.iloc[0]["verdict"] == "consistent with"
    # test: 70% on the 5 test photos (29.5–92.7), not on 10 (39.7–89.2: below the claim)
    low, high = stats.accuracy_interval(0.7, 5)
    assert rows.iloc[1]["this build"].startswith(stats.format_interval(0.7, low, high))
    assert stats.accuracy_interval(0.7, 10)[1] < 0.90 < high
    assert rows.iloc[1]["verdict"] == "consistent with"
    assert rows.iloc[1]["known reason"] == "leaky split"
    one = {"model_one": [record("model_one", [0.9, 0.99], [0.9] * 2, 0.6)]}
    far = tables.reproduction_table(claims[:1], one, {}, "full")
    assert far.iloc[0]["verdict"] == "above"  # 99% of 200: (96.4–99.7) above 66–70
    preview = tables.reproduction_table(claims, runs, {}, "quick")
    assert list(preview["verdict"]) == ["", ""]  # claims about the full study: no verdict
    assert list(preview["claim's profile"]) == ["full", "full"]
    anywhere = [Claim("model_one", "val_accuracy", 0.1, 0.2, "")]
    assert tables.reproduction_table(anywhere, runs, {}, "quick").iloc[0]["verdict"] == "above"


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
