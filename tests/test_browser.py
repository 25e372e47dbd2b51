"""The built site in headless Chromium: clean loads, images, navigation, search, theme.

One tiny build per module (like test_build.py), served on 127.0.0.1 and driven with
Playwright's sync API against Debian's Chromium. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from browser_helpers import CHROMIUM, CHROMIUM_ARGS, Problems, is_local, serve, watch
from conftest import ROOT, make_images

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    # A developer without Chromium is told how to get it; CI (CI=true) never skips.
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                       reason=f"{CHROMIUM} missing: apt-get install chromium"),
]

PAGES = ["index", "data", "model-one", "model-two", "model-three", "model-four", "test",
         "comparison"]
NAV_TITLES = ["Introduction", "Obtaining the data", "Model one", "Model two", "Model three",
              "Model four", "Score on test data", "Model comparison"]
MODEL_ROWS = ["Model one", "Model two", "Model three", "Model four"]
TIMEOUT_MS = 15_000
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"

Visit = Callable[[str], tuple[Any, Problems]]


def _site_name() -> str:
    match = re.search(r"^site_name:\s*(.+)$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    assert match, "mkdocs.yml has no site_name"
    return match.group(1).strip()


def _path(name: str) -> str:
    return "/" if name == "index" else f"/{name}/"


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One tiny quick-profile build of the project's pages; returns its settings."""
    from catdog_report.build import build
    from catdog_report.config import Settings

    root = tmp_path_factory.mktemp("browser-build")
    project = root / "project"
    project.mkdir()
    shutil.copytree(ROOT / "content", project / "content",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "study.yml"):
        shutil.copy(ROOT / name, project / name)
    data = make_images(root / "cats_and_dogs_filtered")
    # Module fixtures run outside conftest's per-test isolation: isolate the build here.
    with pytest.MonkeyPatch.context() as mp:
        for var in [v for v in os.environ if v.startswith("CATDOG_")]:
            mp.delenv(var)
        mp.setenv("KERAS_HOME", str(root / "keras-home"))
        import keras

        weights = root / "mobilenet_v2_no_top.weights.h5"
        keras.applications.MobileNetV2(input_shape=(100, 100, 3), include_top=False,
                                       weights=None).save_weights(weights)
        settings = Settings(profile="quick", project_dir=project, data_dir=data,
                            weights=weights, cache_dir=root / "cache", image_size=100,
                            batch_size=8,
                            epochs={m: 1 for m in ("model_one", "model_two", "model_three",
                                                   "model_four")})
        result = build(settings)
    assert result.published, "the tiny build did not publish a site"
    return settings


@pytest.fixture(scope="module", params=["mkdocs", "zensical"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every browser test runs on the site of each engine (Material for MkDocs, Zensical)."""
    return str(request.param)


@pytest.fixture(scope="module")
def site_dir(tiny_build: Any, engine: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny build's site rendered by one engine (pages come from the page cache)."""
    from catdog_report.build import build

    settings = tiny_build.replace(engine=engine)
    with pytest.MonkeyPatch.context() as mp:
        for var in [v for v in os.environ if v.startswith("CATDOG_")]:
            mp.delenv(var)
        result = build(settings)
    assert all(page.cached for page in result.pages), "a second engine re-executed a page"
    out = tmp_path_factory.mktemp(f"site-{engine}") / "site"
    shutil.copytree(settings.site_dir, out)
    return out


@pytest.fixture(scope="module")
def base_url(site_dir: Path) -> Iterator[str]:
    """The site served over HTTP on 127.0.0.1."""
    with serve(site_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[Any]:
    """One headless Chromium for the module, started after the build.

    Playwright's sync API runs an event loop in this thread, and the build's kernels call
    asyncio.run(), which refuses to start inside a running loop: so build (and serve) first.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def visit(browser: Any, base_url: str) -> Iterator[Visit]:
    """Open a page by name in a fresh context; return the page and its recorded problems."""
    contexts: list[Any] = []

    def _visit(name: str) -> tuple[Any, Problems]:
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      color_scheme="light", service_workers="block")
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        problems = watch(context, page)
        response = page.goto(base_url.rstrip("/") + _path(name), wait_until="load")
        assert response is not None and response.ok, f"{name}: {response and response.status}"
        page.wait_for_load_state("networkidle")
        _wait_for_images(page)
        return page, problems

    yield _visit
    for context in contexts:
        context.close()


def _wait_for_images(page: Any) -> None:
    page.wait_for_function("() => Array.from(document.images).every(img => img.complete)",
                           timeout=TIMEOUT_MS)


# ------------------------------------------------------------------------------------- tests


def test_every_page_loads_without_errors_or_external_requests(visit: Visit) -> None:
    failures: dict[str, dict[str, list[str]]] = {}
    for name in PAGES:
        page, problems = visit(name)
        page.wait_for_timeout(300)  # late console errors (search worker start-up)
        assert problems.requests, f"{name}: no requests were seen"
        foreign = [url for url in problems.requests if not is_local(url)]
        found = {**problems.as_dict(), **({"non_local_requests": foreign} if foreign else {})}
        if found:
            failures[name] = found
    assert not failures, "\n" + json.dumps(failures, indent=2)


def test_every_image_has_loaded_and_has_alt_text(visit: Visit) -> None:
    failures: list[str] = []
    total = 0
    for name in PAGES:
        page, _ = visit(name)
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({src: e.getAttribute('src'), "
                   "alt: e.getAttribute('alt'), width: e.naturalWidth}))")
        total += len(images)
        for img in images:
            if img["width"] <= 0:
                failures.append(f"{name}: {img['src']} did not load (naturalWidth 0)")
            if not (img["alt"] or "").strip():
                failures.append(f"{name}: {img['src']} has no alt text")
    assert not failures, "\n" + "\n".join(failures)
    assert total >= 12, f"only {total} images on the whole site"


def test_footer_next_links_walk_the_nav_in_order(visit: Visit, base_url: str,
                                                 engine: str) -> None:
    site_name = _site_name()
    page, problems = visit("index")
    seen: list[tuple[str, str]] = []
    labels: list[str] = []
    for _ in range(len(PAGES) + 1):  # one spare step: the walk must stop by itself
        seen.append((page.evaluate("location.pathname"), page.title()))
        link = page.locator("a.md-footer__link--next")
        if link.count() == 0:
            break
        labels.append(link.get_attribute("aria-label") or "")
        current = page.url
        link.click()
        page.wait_for_url(lambda url, current=current: url != current)
        page.wait_for_load_state("networkidle")  # let the favicon and search index settle
    base_path = re.sub(r"^https?://[^/]+", "", base_url).rstrip("/")
    # MkDocs titles the home page with the site name alone; Zensical prefixes its nav title
    expected = [(base_path + _path(name),
                 site_name if name == "index" and engine == "mkdocs" else f"{title} - {site_name}")
                for name, title in zip(PAGES, NAV_TITLES, strict=True)]
    assert seen == expected
    assert labels == [f"Next: {title}" for title in NAV_TITLES[1:]]
    assert problems.as_dict() == {}


def test_search_for_mobilenetv2_finds_model_four(visit: Visit, engine: str) -> None:
    page, problems = visit("index")
    if engine == "zensical":  # a search button opens a dialog in a shadow root
        page.locator("button.md-search__button").filter(visible=True).first.click()
        page.keyboard.type("MobileNetV2", delay=30)
        hrefs: list[str] = []
        for _ in range(50):
            hrefs = page.evaluate(
                "() => Array.from(document.querySelectorAll('*')).filter(e => e.shadowRoot)"
                ".flatMap(e => Array.from(e.shadowRoot.querySelectorAll('a[href]')))"
                ".map(a => a.href)")
            if any("/model-four/" in href for href in hrefs):
                break
            page.wait_for_timeout(100)
        assert any(urlsplit(h).path.endswith("/model-four/") for h in hrefs), hrefs
        assert problems.as_dict() == {}
        return
    search = page.locator("input.md-search__input")
    if not search.is_visible():
        page.locator('label.md-header__button[for="__search"]').click()
    search.click()
    expect_focused = page.evaluate("document.activeElement?.classList.contains"
                                   "('md-search__input')")
    assert expect_focused, "the search input did not take focus"
    search.press_sequentially("MobileNetV2", delay=30)
    page.locator(".md-search-result__item").first.wait_for(state="visible")
    hrefs = page.eval_on_selector_all(".md-search-result__item a",
                                      "els => els.map(a => a.href)")
    assert any(urlsplit(href).path.endswith("/model-four/") for href in hrefs), hrefs
    assert problems.as_dict() == {}


def test_comparison_table_has_four_models_and_the_baseline(visit: Visit) -> None:
    page, _ = visit("comparison")
    table = page.locator("article table").first
    table.wait_for(state="visible")
    rows = table.locator("tbody tr")
    assert rows.count() == 5
    heads = [text.strip() for text in
             table.locator("tbody tr > :first-child").all_inner_texts()]
    assert sorted(h for h in heads if h in MODEL_ROWS) == sorted(MODEL_ROWS), heads
    assert sum(h.lower().startswith("baseline") for h in heads) == 1, heads


def test_palette_toggle_switches_to_slate_and_figures_stay_visible(visit: Visit) -> None:
    page, problems = visit("model-one")
    scheme = "document.body.getAttribute('data-md-color-scheme')"
    assert page.evaluate(scheme) == "default"
    toggle = page.locator('form[data-md-component="palette"] label').filter(visible=True)
    assert toggle.count() == 1, "expected one visible palette toggle"
    toggle.click()
    page.wait_for_function(f"() => {scheme} === 'slate'", timeout=TIMEOUT_MS)
    _wait_for_images(page)
    figures = page.eval_on_selector_all(".md-typeset img", """els => els.map(e => {
        const s = getComputedStyle(e), r = e.getBoundingClientRect();
        return {src: e.getAttribute('src'), width: e.naturalWidth, w: r.width, h: r.height,
                display: s.display, visibility: s.visibility, opacity: parseFloat(s.opacity),
                background: s.backgroundColor};
    })""")
    assert figures, "model one has no figures"
    hidden = [f for f in figures if f["width"] <= 0 or f["w"] <= 0 or f["h"] <= 0
              or f["display"] == "none" or f["visibility"] != "visible" or f["opacity"] <= 0]
    assert hidden == []
    transparent = [f for f in figures
                   if f["background"] in ("transparent", "rgba(0, 0, 0, 0)")]
    assert transparent == [], "figures sit on the dark page without their white card"
    # And back again.
    page.locator('form[data-md-component="palette"] label').filter(visible=True).click()
    page.wait_for_function(f"() => {scheme} === 'default'", timeout=TIMEOUT_MS)
    assert problems.as_dict() == {}


def test_full_page_screenshots(visit: Visit, engine: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in PAGES:
        page, _ = visit(name)
        path = SCREENSHOTS / f"{engine}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size > 5_000, f"{name}: suspiciously small screenshot"


# ---------------------------------------------------------------------------- accessibility

AXE_TAGS = ["wcag2a", "wcag2aa"]


def _axe_source() -> str:
    """axe-core's script, as the axe-playwright-python package ships it (offline)."""
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_has_no_wcag_a_or_aa_violations(browser: Any, base_url: str,
                                                    scheme: str) -> None:
    """axe-core finds no WCAG 2 A/AA violation on any page, in either palette (contrast of
    code, tables and footer; links in text told apart by more than colour; scrollable
    regions reachable by keyboard), and no code block runs off its column at 1280 px."""
    axe = _axe_source()
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  color_scheme=scheme, service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    found: dict[str, list[str]] = {}
    try:
        for name in PAGES:
            page.goto(base_url.rstrip("/") + _path(name), wait_until="load")
            page.evaluate(axe)
            result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', "
                                   "values: tags}})", AXE_TAGS)
            bad = [f"{v['id']} at {v['nodes'][0]['target']}: {v['help']}"
                   for v in result["violations"]]
            cut = page.evaluate("() => [...document.querySelectorAll('.md-typeset pre > code')]"
                                ".filter(c => c.scrollWidth > c.clientWidth + 1).length")
            if cut:
                bad.append(f"{cut} code block(s) run off the column at 1280 px")
            if bad:
                found[name] = bad
    finally:
        context.close()
    assert not found, f"{scheme} palette: {found}"
