"""Render the executed pages into the generated docs folder's files: each page's Markdown
(title, banner, downloads, body, stamp), its images, notebook and source, and the assets."""

from __future__ import annotations

from typing import Any

from . import data, pages, stamp
from .config import Settings
from .plan import Plan


def render(page: pages.Page, state: dict[str, Any], head: str) -> str:
    """A page's final Markdown: title, banner, downloads, body, stamp."""
    body = page.markdown
    lines = body.split("\n", 1)  # keep the H1 first, then the banner
    if lines[0].startswith("# "):
        top, rest = lines[0] + "\n\n", lines[1] if len(lines) > 1 else ""
    else:
        top, rest = "", body
    return (top + head + "\n" + stamp.downloads(page.name) + "\n" + rest.strip() + "\n\n"
            + stamp.stamp(page, state, page.runs))


def docs_files(settings: Settings, plan: Plan, dataset: data.Dataset,
               base_text: str) -> dict[str, bytes]:
    """Every file of the generated docs folder."""
    spec = settings.profile_spec
    study = settings.study
    head = stamp.banner(study, dataset.source, spec, base_text)
    state = {"commit": stamp.git_state(settings.project_dir), "versions": stamp.package_versions(),
             "manifest": dataset.manifest, "seed": settings.seed, "profile": settings.profile,
             "cpu": stamp.cpu_model()}
    files: dict[str, bytes] = {}
    content = settings.project_dir / "content"
    for node in plan.pages:
        page = node.page
        if page is None:
            continue
        files[f"{page.name}.md"] = render(page, state, head).encode()
        files.update(page.images)
        files[f"notebooks/{page.name}.ipynb"] = page.notebook.encode()
        files[f"sources/{page.name}.md.txt"] = node.text.encode()
    assets = content / "assets"
    if assets.is_dir():
        for p in sorted(assets.rglob("*")):
            if p.is_file():
                files[f"assets/{p.relative_to(assets).as_posix()}"] = p.read_bytes()
    return files
