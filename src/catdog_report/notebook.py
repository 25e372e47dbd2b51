"""What a content page calls inside its Jupyter kernel: the study, and display helpers."""

from __future__ import annotations

import base64
import io
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import config, data, environment, figures, handoff, models, stats, tables, training, weights
from . import explain as xai
from .errors import ConfigError
from .escape import code_span as code_span  # the escapes a page interpolates with
from .escape import html_attribute as html_attribute
from .escape import markdown_text as markdown_text
from .study import ModelSpec
from .study import Study as Declaration
from .training import Run


def _log_to_terminal() -> None:
    """Inside a build, send library logs to the kernel's own stderr: the build terminal."""
    root = logging.getLogger("catdog_report")
    if environment.read().settings is not None and not root.handlers:
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("    %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


@dataclass
class Study:
    """What a page works with: the settings, the study's declaration, the data set and
    the build's runs; images are decoded on first use."""

    settings: config.Settings
    dataset: data.Dataset

    @property
    def declaration(self) -> Declaration:
        """The study.yml this build runs."""
        return self.settings.study

    @property
    def models(self) -> dict[str, ModelSpec]:
        """The study's models, in declaration order."""
        return dict(self.declaration.models)

    def title(self, name: str) -> str:
        """A model's title, as study.yml declares it."""
        return self.declaration.model(name).title

    @cached_property
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Decoded images and labels per split."""
        return data.arrays(self.dataset, self.settings)

    @cached_property
    def weights(self) -> tuple[str | None, str]:
        """The base weights of the models that declare one, and their description."""
        return weights.resolve(self.settings)

    def fit(self, name: str) -> Run:
        """Train (or load from the run cache) a model the study declares."""
        self.declaration.model(name, "st.fit()")
        runs = handoff.build_runs()
        if runs is not None:  # inside a build: it trained or loaded the run already
            if name not in runs:
                raise training.missing_run(name, self.settings)
            return training.load_given(name, self.settings, runs[name])
        base = self.weights[0]
        return training.fit(training.spec_for(name, self.settings, base), self.settings,
                            self.dataset, self.arrays, base)

    def seed_runs(self, name: str) -> list[Run]:
        """Every seed's run of a model (the first is the one fit() returns)."""
        self.declaration.model(name, "st.seed_runs()")
        seeds = handoff.build_runs("seeds")
        if seeds is None:  # a page run by hand: this process trains or loads them
            base = self.weights[0]
            return [training.fit(training.spec_for(name, self.settings, base, s),
                                 self.settings, self.dataset, self.arrays, base)
                    for s in self.settings.seeds_for(name)]
        if name not in seeds:
            raise training.missing_run(name, self.settings)
        return [training.load_given(name, self.settings, e) for e in seeds[name]]

    def all_seed_runs(self) -> dict[str, list[Run]]:
        """Every run of the build by model, each model's seeds in order."""
        return {name: self.seed_runs(name) for name in self._models_in_build()}

    def test_images(self, files: list[str]) -> list[np.ndarray]:
        """Decoded test images by file name."""
        x, _ = self.arrays["test"]
        index = {f: i for i, f in enumerate(self.dataset.test.files)}
        return [x[index[f]] for f in files]

    def explain(self, run: Run, photos: Sequence[str] | None = None, wrong: int = 4,
                right: int = 2) -> None:
        """Show where a trained run looks: Grad-CAM maps of its predicted class over test
        photos (by default its `wrong` most confident mistakes and, for contrast, `right`
        correct photos), with the prose on where the heat lies. The maps come from the
        run's cached weights (nothing retrains); a model without a convolution layer is
        named as having none."""
        show_explanation(self, run, photos, wrong, right)

    def compare_explanations(self, runs: Sequence[Run], shown: int = 4,
                             sample: int = 16) -> None:
        """Show the same `shown` test photos' Grad-CAM maps for every run side by side, and
        a table and prose of where each model's heat lies on `sample` common photos (the
        ones the most models got wrong first)."""
        show_compared_explanations(self, runs, shown, sample)

    def runs_in_build(self) -> list[Run]:
        """Every run of this build, in the study's order (parents before children)."""
        runs = handoff.build_runs()
        if runs is None:  # a page run by hand: fit every model of the study
            return [self.fit(name) for name in self.declaration.order(self.models)]
        return [training.load_given(name, self.settings, runs[name])
                for name in self.declaration.order(runs)]

    def _models_in_build(self) -> list[str]:
        """The models this build trained, in the study's order (parents first); every model
        of the study when a page runs by hand."""
        runs = handoff.build_runs()
        return self.declaration.order(self.models if runs is None else runs)

    def model_pages(self) -> dict[str, str]:
        """Model name → the nav page that fits it (the first one, if several do)."""
        from . import pages, plan, site

        out: dict[str, str] = {}
        for name in site.nav_pages(self.settings.project_dir):
            path = self.settings.project_dir / "content" / f"{name}.md"
            needs = plan.page_needs(pages.code_cells(pages.read(path)), path.name)
            for model in needs.fits:
                out.setdefault(model, name)
        return out

    def chapters(self) -> list[tuple[str, str]]:
        """(title, page) for every page of the site's nav, in order."""
        from . import site

        return site.nav_titles(self.settings.project_dir)


def study() -> Study:
    """The study of the current build (or of the CATDOG_* variables when run by hand)."""
    _log_to_terminal()
    settings = config.from_environment()
    build_dir = handoff.build_dir()
    if build_dir:  # the build scanned the data once and recorded it
        return Study(settings, handoff.read_dataset(build_dir))
    return Study(settings, data.scan(settings))


def _has_photo(fig: Any) -> bool:
    return any(ax.get_images() and ax.get_images()[0].get_array().ndim == 3 for ax in fig.axes)


def figure_bytes(fig: Any) -> tuple[str, bytes]:
    """Encode a figure for the web: WebP for photos, palette PNG for plots."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor="white")
    img = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    out = io.BytesIO()
    if _has_photo(fig):
        img.save(out, format="WEBP", quality=80, method=4)
        return "image/webp", out.getvalue()
    img.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return "image/png", out.getvalue()


def show(fig: Any, caption: str | None = None) -> None:
    """Display a figure with its alt text and an optional caption."""
    from IPython.display import display

    mime, payload = figure_bytes(fig)
    meta = {"alt": str(fig.get_label() or "figure"), "caption": caption or ""}
    display({mime: base64.b64encode(payload).decode(), "text/plain": meta["alt"]},
            raw=True, metadata={mime: meta})


def markdown_table(df: pd.DataFrame, formats: Mapping[str, str] | None = None,
                   bold: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> str:
    """A pipe table; formats maps column → format spec; bold marks given values. Columns of
    words align left, the others (numbers, percentages) right."""
    formats, bold, headers = formats or {}, bold or {}, headers or {}
    cols = [df.index.name or ""] + [headers.get(str(c), str(c)) for c in df.columns]
    align = [":--" if _words(df[c]) else "--:" for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---", *align]) + "|"]
    for idx, row in df.iterrows():
        cells = [str(idx)]
        for col in df.columns:
            value = row[col]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                cells.append("–")
                continue
            text = format(value, formats.get(col, "")) if col in formats else str(value)
            cells.append(f"**{text}**" if col in bold and value == bold[col] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _words(column: pd.Series) -> bool:
    """Whether a column holds words (type names, shapes, reasons) rather than numbers (a
    bound such as "< 0.001" is a number)."""
    values = [v for v in column if isinstance(v, str) and v not in ("", "–")]
    return bool(values) and not any(v.strip("*").lstrip("<>≤≥ ")[:1].isdigit()
                                    or v.startswith("-") for v in values)


def say(text: str) -> None:
    """Display Markdown prose (numbers in it come from the code that formats it)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def show_table(df: pd.DataFrame, formats: Mapping[str, str] | None = None,
               bold: Mapping[str, Any] | None = None, caption: str = "",
               headers: Mapping[str, str] | None = None) -> None:
    """Display a DataFrame as a Markdown table."""
    say(markdown_table(df, formats, bold, headers) + (f"\n\n*{caption}*" if caption else ""))


def show_code(*functions: str) -> None:
    """Display functions of the study's own code (the model builders) as Python."""
    settings = config.from_environment()
    say(f"```python\n{models.source(settings, *functions)}\n```")


def show_layers(run: Run) -> None:
    """The trained model's layers as a table, with its own parameter totals."""
    show_table(tables.layer_table(run.record), formats={"params": ",", "trainable": ","},
               caption=tables.parameter_totals(run.record))


def project_file(*parts: str) -> Path:
    """A path inside the project."""
    return config.from_environment().project_dir.joinpath(*parts)


def show_evaluation(st: Study, run: Run, title: str) -> None:
    """The confusion matrix and the misclassified test photos of one run."""
    preds = tables.predictions(run.record)
    counts = tables.confusion_matrix(preds["true"], preds["predicted"], run.record["class_names"])
    show(figures.plot_confusion(counts, title),
         caption=f"{title} on the {len(preds)} test photos: counts and rates per true class")
    wrong = tables.misclassified(run.record)
    if wrong.empty:
        say(f"{title} misclassified none of the {len(preds)} test photos.")
        return
    shown = wrong.head(8)
    show(figures.plot_misclassified(st.test_images(list(shown["file"])), shown, title),
         caption=f"{len(shown)} of the {len(wrong)} test photos {title} got wrong, "
                 "most confident mistakes first")


def final_validation(run: Run) -> str:
    """'72.8% (69.6–75.8)': the final epoch's validation accuracy with the 95% interval of its
    photo count (the final epoch, not the best: a maximum over epochs is biased upward)."""
    acc, n = run.history["val_accuracy"][-1], run.record["images"]["validation"]
    return stats.format_accuracy(acc, n)


def settle_sentence(run: Run) -> str:
    """'between **61.1%** and **64.0%** over its last 5 epochs (the min–max of those epochs;
    final epoch 61.1% (57.7–64.4) on 800 photos)'."""
    lo, hi = tables.settle_range(run.history)
    last = min(tables.SETTLE_EPOCHS, len(run.history["val_accuracy"]))
    return (f"between **{lo:.1%}** and **{hi:.1%}** over its last {last} epochs (the min–max "
            f"of those epochs; final epoch {final_validation(run)} on "
            f"{run.record['images']['validation']} photos, 95% interval in brackets)")


def test_score(run: Run) -> str:
    """'Test accuracy: **93.5% (89.2–96.2)** on 200 photos (loss 0.172).'"""
    acc, n = run.record["test"]["accuracy"], len(run.record["predictions"]["true"])
    return (f"Test accuracy: **{stats.format_accuracy(acc, n)}** "
            f"on {n} photos, 95% interval in brackets (loss {run.record['test']['loss']:.3f}).")


def show_seeds(st: Study, name: str) -> None:
    """Every seed's validation curve of a model, or say that seed variance was not measured."""
    runs = st.seed_runs(name)
    if len(runs) == 1:
        say(f"One training run (seed {runs[0].record['seed']}): seed variance was not "
            "measured; build with `--seeds 3` to see how much a rerun moves these numbers.")
        return
    seeds = [r.record["seed"] for r in runs]
    show(figures.plot_seed_histories([r.history for r in runs], seeds, st.title(name)),
         caption=f"{st.title(name)}: validation accuracy of each of its {len(runs)} seeds")
    acc = stats.mean_std_range([r.record["test"]["accuracy"] for r in runs])
    n = len(runs[0].record["predictions"]["true"])
    say(f"Over {len(runs)} seeds the mean test accuracy is {stats.format_accuracy(acc['mean'], n)} "
        f"on {n} photos (95% interval in brackets); from seed to seed it has a standard "
        f"deviation of {acc['std']:.1%} and runs from {acc['min']:.1%} to {acc['max']:.1%}.")


SAMPLE_WRONG = SAMPLE_RIGHT = 16  # the photos a model page's prose describes (one batch)


def _short(file: str) -> str:
    return file.rsplit("/", 1)[-1]


NO_WEIGHTS = ("its run came from the freeze without its trained weights (`catdog-report "
              "freeze --with-weights` keeps them)")


def _maps_of(st: Study, run: Run, rows: pd.DataFrame) -> xai.Explanation:
    """The Grad-CAM maps of one run over the given prediction rows: those stored with the
    run where it trained, else computed from its cached weights; none, with a note saying
    why, for a run frozen without either."""
    size = (st.settings.image_size, st.settings.image_size)
    found = xai.stored(run.folder, rows, run.record["class_names"], size)
    if found is not None:
        return found
    if run.folder is not None and not run.has_weights:
        rows = rows.reset_index(drop=True)
        return xai.Explanation(list(rows["file"]), list(rows["true"]), list(rows["predicted"]),
                               [float(p) for p in rows["probability"]], note=NO_WEIGHTS)
    images = np.stack(st.test_images(list(rows["file"]))) if len(rows) else np.zeros((0,))
    return xai.explain(run.load_model(), images, rows, run.record["class_names"])


def _alt(title: str, e: xai.Explanation) -> str:
    wrong = sum(t != p for t, p in zip(e.true, e.predicted, strict=True))
    return (f"Grad-CAM maps of {title} on {len(e.files)} test photos, {wrong} of them "
            "misclassified, red where the heat is: "
            + "; ".join(xai.describe(e, i) for i in range(len(e.files))))


def _share_sentence(label: str, row: pd.Series, coarse: bool) -> str:
    """Where one map's heat lies, in words, from its summary row."""
    where_ = (f"the ninth of the photo that holds the most heat is most often the "
              f"{row['most heat in']}")
    if coarse:
        return (f"its {markdown_text(label)} is too coarse to tell the centre from the border; "
                f"{where_}")
    if row["centre share"] != row["centre share"]:  # NaN: no heat on any photo
        return f"its {markdown_text(label)} has no heat on any of them (no positive evidence)"
    cold = row["photos"] - row["with heat"]
    text = (f"its {markdown_text(label)} puts on average **{row['centre share']:.0%}** of its heat "
            f"in the central quarter of the photo ({xai.CENTRE:.0%} if it were spread evenly)"
            + (f", on the {row['with heat']} photos where it has any heat" if cold else ""))
    mistakes, correct = row["on mistakes"], row["on correct"]
    if mistakes == mistakes and correct == correct:  # both kinds of photo were described
        text += (f", {mistakes:.0%} on its mistakes against {correct:.0%} on the photos it "
                 "got right")
    return f"{text}; {where_}"


def show_explanation(st: Study, run: Run, photos: Sequence[str] | None = None,
                     wrong: int = 4, right: int = 2) -> None:
    """Grad-CAM maps of one run (see Study.explain)."""
    title = st.title(run.name)
    preds = tables.predictions(run.record)
    if photos is None:
        shown = list(xai.pick_photos(preds, wrong, right)["file"])
        rows = xai.pick_photos(preds, SAMPLE_WRONG, SAMPLE_RIGHT)
    else:
        shown = list(photos)
        unknown = sorted(set(shown) - set(preds["file"]))
        if unknown:
            raise ConfigError(f"st.explain(): {', '.join(unknown[:3])} "
                              f"{'is' if len(unknown) == 1 else 'are'} not among the test "
                              f"photos of {run.name}'s run; pass files of its test split")
        rows = preds.set_index("file").loc[shown].reset_index()
    e = _maps_of(st, run, rows)
    if not e.maps:
        say(f"{markdown_text(title)} has no class-activation map: {e.note}." if e.note else
            f"{markdown_text(title)} has no test photos to explain.")
        return
    part = xai.subset(e, shown)
    wrong_flags = [t != p for t, p in zip(part.true, part.predicted, strict=True)]
    photo = figures.Panel("photo", np.zeros(0), [
        f"true {t}\npredicted {p} ({c:.0%})"
        for t, p, c in zip(part.true, part.predicted, part.confidence, strict=True)], wrong_flags)
    panels = [figures.Panel(label, maps) for label, maps in part.maps.items()]
    show(figures.plot_gradcam(st.test_images(shown), photo, panels, _alt(title, part),
                              names=[_short(f) for f in shown]),
         caption=f"Where {title} looks: Grad-CAM maps of its predicted class on "
                 f"{sum(wrong_flags)} of its mistakes ("
                 + ("most confident first, " if photos is None else "")
                 + f"predictions in red) and {len(shown) - sum(wrong_flags)} correct photos; "
                 "red is most heat")
    summary = xai.summary(xai.regions(e))
    n_wrong = sum(t != p for t, p in zip(e.true, e.predicted, strict=True))
    say(f"Over {len(e.files)} test photos ({n_wrong} of its mistakes and "
        f"{len(e.files) - n_wrong} correct photos), "
        + "; ".join(_share_sentence(label, row, min(e.sizes.get(label, (3, 3))) < 3)
                    for label, row in summary.iterrows()) + "."
        + (f" ({e.note}.)" if e.note else ""))


def show_compared_explanations(st: Study, runs: Sequence[Run], shown: int = 4,
                               sample: int = 16) -> None:
    """The same photos' Grad-CAM maps for every run (see Study.compare_explanations)."""
    preds = {r.name: tables.predictions(r.record) for r in runs}
    files = xai.common_photos(preds, sample)
    first = files[:shown]
    panels, summaries, without, notes = [], [], [], []
    for run in runs:
        title = st.title(run.name)
        e = _maps_of(st, run, preds[run.name].set_index("file").loc[files].reset_index())
        if not e.maps:
            without.append(f"{title} ({e.note})")
            continue
        if e.note:
            notes.append(f"{title}: {e.note}.")
        part = xai.subset(e, first)
        wrong_flags = [t != p for t, p in zip(part.true, part.predicted, strict=True)]
        captions = [f"{p} ({c:.0%})" for p, c in zip(part.predicted, part.confidence,
                                                      strict=True)]
        panels += [figures.Panel(f"{title}: {label}", maps, captions, wrong_flags)
                   for label, maps in part.maps.items()]
        table = xai.summary(xai.regions(e)).reset_index()
        coarse = [min(e.sizes.get(label, (3, 3))) < 3 for label in table["map"]]
        summaries.append(table.assign(model=title, coarse=coarse))
    if not panels:
        say("No model of this build has a convolution layer, so none has a "
            "class-activation map." if not any(NO_WEIGHTS in w for w in without) else
            "No model of this build has a class-activation map here: "
            + markdown_text("; ".join(without)) + ".")
        return
    true = list(preds[runs[0].name].set_index("file").loc[first, "true"])
    photo = figures.Panel("photo", np.zeros(0), [f"true {t}" for t in true])
    alt = ("Grad-CAM maps of every model on the same " + str(len(first)) + " test photos: "
           + "; ".join(f"{_short(f)}, a {t} photo: " + ", ".join(
               f"{p.label} predicted {p.captions[i]}, heat {xai.lies(p.maps[i])}"
               for p in panels)
               for i, (f, t) in enumerate(zip(first, true, strict=True))))
    show(figures.plot_gradcam(st.test_images(first), photo, panels, alt, photos_in_rows=True,
                              names=[_short(f) for f in first]),
         caption=f"The same {len(first)} test photos through every model: each one's "
                 "Grad-CAM map of its predicted class (wrong predictions in red); red is "
                 "most heat")
    table = pd.concat(summaries, ignore_index=True)
    table.index = [markdown_text(f"{m}, {label}") for m, label in zip(table["model"], table["map"],
                                                                  strict=True)]
    table.index.name = "model, map"
    n_hard = sum(any(not preds[r.name].set_index("file").loc[f, "correct"] for r in runs)
                 for f in files)
    show_table(table[["with heat", "centre share", "on mistakes", "on correct",
                      "most heat in"]],
               formats={"centre share": ".0%", "on mistakes": ".0%", "on correct": ".0%"},
               caption=f"Where each model looks on the same {len(files)} test photos "
                       f"({n_hard} that at least one model got wrong, hardest first): the "
                       "photos on which its map has any heat (positive evidence), the "
                       "share of that heat in the central quarter of the photo (25% if "
                       "spread evenly), on all of them, on its mistakes and on the photos "
                       "it got right, and the ninth of the photo (a 3x3 grid) that most "
                       "often holds the most heat.")
    ranked = table.dropna(subset=["centre share"]).sort_values(
        "centre share", ascending=False, kind="stable")
    coarse, cold = int(table["coarse"].sum()), len(table) - len(ranked) - int(table["coarse"].sum())
    left_out = " ".join(
        f"({k} of the maps {'is' if k == 1 else 'are'} {why}.)" for k, why in (
            (coarse, "too coarse to tell the centre from the border"),
            (cold, "without heat on every one of these photos")) if k)
    no_map = ((" No map for " + markdown_text(", ".join(without)) + "." if without else "")
              + "".join(" " + markdown_text(n) for n in notes))
    if ranked.empty:
        say(f"No map tells the centre of these photos from their border. {left_out}{no_map}"
            .strip())
        return
    top, low = ranked.iloc[0], ranked.iloc[-1]
    above = int((ranked["centre share"] > xai.CENTRE).sum())
    def few(row: pd.Series) -> str:
        return (f", on the {row['with heat']} photos where it has any heat"
                if row["with heat"] < row["photos"] else "")

    say(f"On these photos the map that looks the most at the centre is {top.name} "
        f"(**{top['centre share']:.0%}** of its heat in the central quarter{few(top)}), and "
        f"the one that looks the least {low.name} (**{low['centre share']:.0%}**{few(low)}); "
        f"{above} of the "
        f"{len(ranked)} maps put more heat there than an even spread would "
        f"({xai.CENTRE:.0%}). {left_out}{no_map}".strip())
