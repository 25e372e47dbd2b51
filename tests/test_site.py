from pathlib import Path

import pytest

from catdog_report import site
from catdog_report.errors import BuildError


def test_nav_order_comes_from_mkdocs_yml(project: Path) -> None:
    assert site.nav_pages(project) == ["index", "data", "model-one", "model-two",
                                       "model-three", "model-four", "test", "comparison"]
    (project / "content" / "test.md").unlink()
    with pytest.raises(BuildError, match="'test'"):
        site.nav_pages(project)


def test_sync_docs_writes_changes_and_removes_stale(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    assert site.sync_docs(docs, {"a.md": b"A", "img/x.png": b"X"}) == 2
    assert site.sync_docs(docs, {"a.md": b"A", "img/x.png": b"X"}) == 0
    assert site.sync_docs(docs, {"a.md": b"B"}) == 1
    assert sorted(p.name for p in docs.rglob("*")) == ["a.md"]


def test_swap_replaces_the_site_whole(tmp_path: Path) -> None:
    old, new = tmp_path / "site", tmp_path / "site.tmp-1"
    old.mkdir()
    (old / "old.html").write_text("old")
    new.mkdir()
    (new / "new.html").write_text("new")
    site.swap(new, old)
    assert [p.name for p in old.iterdir()] == ["new.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_recover_restores_a_site_moved_aside(tmp_path: Path) -> None:
    aside = tmp_path / "site.old-123"
    aside.mkdir()
    (aside / "index.html").write_text("old")
    (tmp_path / "site.tmp-9").mkdir()
    site.recover(tmp_path / "site")
    assert (tmp_path / "site" / "index.html").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def _publish_over_an_old_site(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              failure: Exception) -> BuildError:
    """Publish over a site holding 'previous' while MkDocs writes half a page, then fails
    with `failure`; the old site must stay and no temp folder be left. The error raised."""
    from mkdocs.commands import build as mkbuild

    docs = tmp_path / "docs"
    site.sync_docs(docs, {"index.md": b"# Hi\n"})
    out = project / "site"
    out.mkdir()
    (out / "index.html").write_text("previous")

    def crash(cfg: object, **kw: object) -> None:
        Path(cfg["site_dir"], "index.html").write_text("half")  # type: ignore[index]
        raise failure

    monkeypatch.setattr(mkbuild, "build", crash)
    with pytest.raises(BuildError) as err:
        site.publish(project, out, docs)
    assert (out / "index.html").read_text() == "previous"
    assert not list(project.glob("site.tmp-*"))
    return err.value


def test_failed_mkdocs_build_leaves_the_old_site(project: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mkdocs.exceptions import MkDocsException

    error = _publish_over_an_old_site(project, tmp_path, monkeypatch,
                                      MkDocsException("disk full"))
    assert "disk full" in str(error)


def test_publish_builds_and_then_skips_when_unchanged(project: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    site.sync_docs(docs, {"index.md": b"# Hi\n", "assets/extra.css": b""})
    out = project / "site"
    assert site.publish(project, out, docs)
    assert "Hi" in (out / "index.html").read_text()
    assert not site.publish(project, out, docs)
    site.sync_docs(docs, {"index.md": b"# Changed\n", "assets/extra.css": b""})
    assert site.publish(project, out, docs)
    assert "Changed" in (out / "index.html").read_text()


def test_page_weights_count_html_images_styles_and_scripts(tmp_path: Path) -> None:
    out = tmp_path / "site"
    (out / "comparison").mkdir(parents=True)
    (out / "style.css").write_bytes(b"x" * 100)
    (out / "comparison" / "big.png").write_bytes(b"x" * 1_600_000)
    html = ('<link rel="stylesheet" href="../style.css"><link rel="canonical" href="../">'
            '<img src="big.png"><a href="../">home</a><img src="https://example.org/x.png">')
    (out / "comparison" / "index.html").write_text(html)
    (out / "index.html").write_text('<link rel="stylesheet" href="style.css">')
    weights = site.page_weights(out)
    assert weights == {"index": 100 + 40, "comparison": len(html) + 100 + 1_600_000}
    assert site.over_budget(weights) == [
        f"comparison: {weights['comparison']:,} bytes > 1,500,000"]
    assert site.over_budget({"any-page": 1_500_001, "index": 1_500_000}) == [
        "any-page: 1,500,001 bytes > 1,500,000"]  # one budget for every page
    assert site.over_budget(weights, budget=2_000_000) == []


def test_a_full_disk_while_publishing_leaves_the_old_site(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from catdog_report.cache import _mount_point

    error = _publish_over_an_old_site(project, tmp_path, monkeypatch,
                                      OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert str(error) == (
        f"cannot write the site: {project} is full (no space left on the file system at "
        f"{_mount_point(project)}); nothing partial was kept. Free space there, or build a copy "
        "of the project (--project) on a disk with room")
