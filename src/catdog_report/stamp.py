"""Provenance: the banner and reproducibility stamp every page carries."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .escape import code_span, markdown_text

PACKAGES = {"TensorFlow": ("tensorflow", "tensorflow-cpu"), "Keras": ("keras",),
            "NumPy": ("numpy",)}


def git_state(project: Path) -> str:
    """The commit, with '(dirty)' when the work tree has changes; 'not a git checkout' else."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=project,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=project, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return commit + (" (dirty)" if dirty.strip() else "")


def package_versions() -> dict[str, str]:
    """Python and the numeric packages' versions."""
    out = {"Python": platform.python_version()}
    for label, dists in PACKAGES.items():
        for dist in dists:
            try:
                out[label] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def cpu_model() -> str:
    """The CPU's model name and core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{name}, {os.cpu_count()} cores"


def banner(study: Any, data_source: str, profile: Any, base: str) -> str:
    """The admonition at the top of every page: which data, base weights and profile."""
    synthetic = profile.synthetic
    kind = "warning" if synthetic or "untrained" in base else "info"
    classes = " and ".join(study.data.classes)
    data = (f"**synthetic drawings** of {classes} ({markdown_text(data_source)}) — not the "
            "real study" if synthetic else f"the real {code_span(study.data.name)} photos "
            f"({markdown_text(data_source)})")
    bases = [m.title for m in study.models.values() if m.weights]
    weights = f" {' and '.join(bases)}'s base: {markdown_text(base)}." if bases and base else ""
    return (f'!!! {kind} "Built from {"synthetic" if synthetic else "real"} data, '
            f'profile {profile.name}"\n'
            f"    Data: {data}.{weights} "
            f"Profile `{profile.name}`: {profile.description}.\n")


HOW = {"trained": "trained by this build", "cache": "loaded from the run cache",
       "freeze": "loaded from the committed freeze (frozen/)",
       "remote": "pulled from the remote run cache"}  # by a run's source (handoff.SOURCES)


def stamp(page: Any, state: dict[str, Any], runs: Sequence[dict[str, Any]]) -> str:
    """The collapsible reproducibility stamp for one page."""
    versions = ", ".join(f"{k} {v}" for k, v in state["versions"].items())
    gpus = sorted({g for r in runs for g in r.get("gpus", [])})
    lines = [
        f"- **Commit:** `{state['commit']}`",
        f"- **Packages:** {versions}",
        f"- **Data manifest:** `{state['manifest'][:16]}` · **seed** {state['seed']} · "
        f"**profile** `{state['profile']}`",
        f"- **Hardware:** {state['cpu']}; GPU: {', '.join(gpus) if gpus else 'none'}",
    ]
    for r in runs:
        how = HOW.get(r.get("source") or "", "trained by this build" if r["trained"]
                      else "loaded from the run cache")
        if r.get("source") == "freeze" and not r.get("weights", True):
            how += " without its weights"
        epochs = f"{r['epochs']} epoch{'s' * (r['epochs'] != 1)}"
        threads = (f" ({r['threads']} TensorFlow thread{'s' * (r['threads'] != 1)})"
                   if r.get("threads") else "")  # its rounding follows the thread count
        lines.append(f"- **{r.get('title', r['model'])}** (run `{r['key'][:12]}`, {epochs}, "
                     f"seed {r['seed']}): {how}; trained {r['trained_at']} in "
                     f"{r['train_seconds']:.0f} s{threads}"
                     + (f" ({markdown_text(r['note'])})" if r.get("note") else ""))
    lines.append(f"- **Page executed** {page.executed_at} in {page.seconds:.1f} s "
                 "(reused from the page cache until its inputs change)")
    body = "\n".join("    " + line for line in lines)
    return f'??? note "Reproducibility stamp"\n{body}\n'


def downloads(name: str) -> str:
    """Links to the executed notebook and the page source."""
    return (f"Download: [executed notebook (.ipynb)](notebooks/{name}.ipynb){{ download }} · "
            f"[page source (jupytext Markdown)](sources/{name}.md.txt){{ download }}\n")
