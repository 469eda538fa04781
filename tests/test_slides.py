"""Lecturers' slides: ``jupyter nbconvert --to slides`` with the options of the Makefile's
``slides`` target builds a reveal.js deck for every course notebook, with one ``<section>``
per slide and the stored outputs (figures) inside.

``test_deck_shows_the_explorer_snapshot`` opens each deck holding an explorer output in
Debian's headless Chromium (``tests/test_browser.py``'s), offline (file:// only), moves to the
explorer's slide and checks that the explorer's stored PNG snapshot is shown there, decoded
at its size (screenshots in ``artifacts/browser/slides-*.png``). With reveal.js, require.js and
jQuery in ``build/slides/node_modules`` (``make slides`` installs them) the deck runs as the
lecturer sees it; without them the test checks the same image in the deck's page as it is.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
MAKEFILE = ROOT / "Makefile"
NODE_MODULES = ROOT / "build" / "slides" / "node_modules"  # make slides' npm install
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def make_slides_options(makefile: Path | None = None) -> list[str]:
    """The ``--Class.trait=value`` options of the nbconvert command of the Makefile's
    ``slides`` target (the test builds the decks as ``make slides`` does)."""
    makefile = makefile or MAKEFILE
    text = makefile.read_text(encoding="utf-8")
    start = re.search(r"^slides:.*$", text, flags=re.M)
    assert start, f"no slides target in {makefile}"
    recipe = text[start.end():].split("\n\n")[0].replace("\\\n", " ")
    options = re.findall(r"--[A-Za-z]+\.[A-Za-z_]+=\S+", recipe)
    assert options, f"no nbconvert options in the slides recipe of {makefile}: {recipe!r}"
    return [o.replace("'", "") for o in options]   # the shell's quotes, removed as it does


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> Path:
    """Every notebook converted in one nbconvert run (as ``make slides`` does), next to
    ``make slides``' reveal.js, require.js and jQuery when they are there."""
    if not NOTEBOOKS:
        pytest.skip("no course notebooks in notebooks/ yet")
    out = tmp_path_factory.mktemp("slides")
    src = out / "notebooks"  # a snapshot: notebooks/ may be rebuilt while the test runs
    src.mkdir()
    for nb in NOTEBOOKS:
        shutil.copy2(nb, src / nb.name)
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "slides", "--output-dir",
           str(out), *make_slides_options(), *(str(src / nb.name) for nb in NOTEBOOKS)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, f"nbconvert --to slides failed:\n{run.stderr[-3000:]}"
    if NODE_MODULES.is_dir():
        (out / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    return out


def _slide_type(cell) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


@pytest.mark.parametrize("notebook", NOTEBOOKS or [None], ids=lambda p: p.name if p else "none")
def test_slides_deck(decks, notebook):
    deck = decks / f"{notebook.stem}.slides.html"
    assert deck.is_file(), f"no deck for {notebook.name} in {sorted(decks.iterdir())}"
    text = deck.read_text(encoding="utf-8")
    assert text.strip(), f"{deck.name} is empty"
    assert "Reveal.initialize" in text, f"{deck.name} does not start reveal.js"
    sections = len(re.findall(r"<section\b", text))
    nb = nbformat.read(decks / "notebooks" / notebook.name, as_version=4)
    shown = [c for c in nb.cells if _slide_type(c) != "skip"]
    # a new slide or sub-slide opens a <section> (a slide holding sub-slides nests them)
    starts = sum(_slide_type(c) in ("slide", "subslide") for c in shown)
    assert sections >= max(1, starts), (
        f"{deck.name}: {sections} <section> elements for {starts} slides and sub-slides")
    pngs = sum("image/png" in o.get("data", {}) for c in shown if c.cell_type == "code"
               for o in c.get("outputs", []))
    assert text.count("data:image/png;base64,") >= pngs, (
        f"{deck.name}: fewer embedded PNG figures than the notebook's {pngs}")


def _explorer_snapshot(nb) -> tuple[int, int, int] | None:
    """(cell index, width, height) of the first stored explorer output's PNG snapshot (a
    widget output with an ``image/png``), or None."""
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if WIDGET_MIME in data and "image/png" in data:
                raw = base64.b64decode(data["image/png"])
                assert raw[:8] == b"\x89PNG\r\n\x1a\n", f"cell {i}: not a PNG snapshot"
                return i, int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    return None


WITH_EXPLORER = [nb for nb in NOTEBOOKS
                 if _explorer_snapshot(nbformat.read(nb, as_version=4)) is not None]

# The shown images of the deck, with where they are; with reveal.js, the explorer's slide is
# made the current one (the fragment holding the image shown) before they are read.
_IMAGES_JS = """async ([width, height, reveal]) => {
  const imgs = Array.from(document.querySelectorAll('section img'));
  const hit = imgs.find((i) => i.naturalWidth === width && i.naturalHeight === height);
  if (hit && reveal) {
    const Reveal = require(reveal + '/dist/reveal.js');  // the deck loads it with require.js
    const section = hit.closest('section');
    const {h, v} = Reveal.getIndices(section);
    const fragment = hit.closest('.fragment');
    Reveal.slide(h, v, fragment ? Number(fragment.dataset.fragmentIndex) : undefined);
    await new Promise((r) => setTimeout(r, 1500));  // the slide transition
  }
  if (hit) { hit.scrollIntoView({block: 'center'}); await hit.decode(); }
  const view = [window.innerWidth, window.innerHeight];
  return {count: imgs.length, sizes: imgs.map((i) => [i.naturalWidth, i.naturalHeight]),
          found: !!hit, view,
          hit: hit && (() => {
            const r = hit.getBoundingClientRect();
            const style = getComputedStyle(hit), section = hit.closest('section');
            const fragment = hit.closest('.fragment');
            return {complete: hit.complete, natural: [hit.naturalWidth, hit.naturalHeight],
                    box: [r.left, r.top, r.width, r.height],
                    data_png: hit.src.startsWith('data:image/png;base64,'),
                    hidden: style.visibility === 'hidden' || style.display === 'none',
                    present: !reveal || section.classList.contains('present'),
                    fragment_shown: !fragment || !reveal || fragment.classList.contains('visible'),
                    in_view: r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0
                             && r.left < view[0] && r.top < view[1]};
          })()};
}"""


@pytest.fixture(scope="module")
def chromium():
    from test_browser import _check_browser_available, launch_chromium

    _check_browser_available()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize("notebook", WITH_EXPLORER or [None],
                         ids=lambda p: p.name if p else "none")
def test_deck_shows_the_explorer_snapshot(decks, chromium, notebook):
    if notebook is None:
        pytest.skip("no course notebook shows the explorer")
    from test_browser import ARTIFACTS

    nb = nbformat.read(decks / "notebooks" / notebook.name, as_version=4)
    cell, width, height = _explorer_snapshot(nb)
    deck = decks / f"{notebook.stem}.slides.html"
    prefix = next((o.split("=", 1)[1] for o in make_slides_options()
                   if o.startswith("--SlidesExporter.reveal_url_prefix=")), None)
    reveal = prefix if prefix and (decks / prefix / "dist" / "reveal.js").is_file() else ""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    blocked: list[str] = []

    def offline(route):  # a lecturer's laptop without a network: files only
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(deck.as_uri(), wait_until="load", timeout=60_000)
        if reveal:  # Reveal.initialize() done
            page.wait_for_selector(".reveal.ready", state="attached", timeout=30_000)
        shown = page.evaluate(_IMAGES_JS, [width, height, reveal])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"slides-{notebook.stem}-explorer.png"
        page.screenshot(path=str(shot))
    finally:
        context.close()
    where = f"{deck.name} (cell {cell}'s explorer, see {shot.relative_to(ROOT)})"
    assert shown["found"], (f"{where}: no image of the snapshot's size {width}x{height} in "
                            f"the deck's slides; images shown: {shown['sizes']}")
    hit = shown["hit"]
    assert hit["complete"] and hit["natural"] == [width, height] and hit["data_png"], hit
    assert not hit["hidden"] and hit["present"] and hit["fragment_shown"], (where, hit)
    assert hit["in_view"], f"{where}: the snapshot is outside the window {shown['view']}: {hit}"
    # the snapshot, not the widget: the deck never asks for the widget manager (nbconvert's
    # page still asks CDNs for MathJax, fonts and mermaid, blocked here)
    assert not [u for u in blocked if "widget" in u], (where, blocked, errors)
