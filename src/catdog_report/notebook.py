"""What a content page calls inside its Jupyter kernel: the study, and display helpers."""

from __future__ import annotations

import base64
import io
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import config, data, figures, models, stats, tables, training, weights
from .study import ModelSpec
from .study import Study as Declaration
from .training import Run


def _log_to_terminal() -> None:
    """Inside a build, send library logs to the kernel's own stderr: the build terminal."""
    root = logging.getLogger("catdog_report")
    if os.environ.get(config.ENV_SETTINGS) and not root.handlers:
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
        runs = training.build_runs()
        if runs is not None:  # inside a build: it trained or loaded the run already
            if name not in runs:
                raise training.missing_run(name, self.settings)
            return training.load_given(name, self.settings, runs[name])
        return training.fit(name, self.settings, self.dataset, self.arrays, self.weights[0])

    def seed_runs(self, name: str) -> list[Run]:
        """Every seed's run of a model (the first is the one fit() returns)."""
        self.declaration.model(name, "st.seed_runs()")
        seeds = training.build_runs("seeds")
        if seeds is None:  # a page run by hand: this process trains or loads them
            return [training.fit(name, self.settings.replace(seed=s), self.dataset,
                                 self.arrays, self.weights[0]) for s in self.settings.seed_list]
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

    def runs_in_build(self) -> list[Run]:
        """Every run of this build, in the study's order (parents before children)."""
        runs = training.build_runs()
        if runs is None:  # a page run by hand: fit every model of the study
            return [self.fit(name) for name in self.declaration.order(self.models)]
        return [training.load_given(name, self.settings, runs[name])
                for name in self.declaration.order(runs)]

    def _models_in_build(self) -> list[str]:
        """The models this build trained, in the study's order (parents first); every model
        of the study when a page runs by hand."""
        runs = training.build_runs()
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
    build_dir = os.environ.get(config.ENV_BUILD)
    if build_dir:  # the build scanned the data once and recorded it
        return Study(settings, data.read_dataset(Path(build_dir) / config.DATASET_FILE))
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


def best_validation(run: Run) -> str:
    """'72.8% (69.6–75.8)': the best validation accuracy with its 95% interval."""
    acc, n = max(run.history["val_accuracy"]), run.record["images"]["validation"]
    return stats.format_accuracy(acc, n)


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
    say(f"Over {len(runs)} seeds the test accuracy is {acc['mean']:.1%} ± {acc['std']:.1%} "
        f"(from {acc['min']:.1%} to {acc['max']:.1%}).")
