"""Real-browser tests: JupyterLab driven in Debian's headless Chromium through playwright.

* ``test_explorer_in_browser`` runs a small generated notebook that shows
  :class:`gradcam_edu.explorer.Explorer` on shapes images with their object masks, then moves
  its layer slider, changes the class, the method and the opacity the way a learner does
  (keyboard and select elements), turns the object outline on (a click), and after each change
  checks that the displayed map (the bytes behind the overlay ``<img>``) changed and that no
  error output appeared; the scores line shows the kernel's scores.
* ``test_exported_html_shows_the_snapshot`` executes that notebook with nbclient (as
  ``tools/build_notebooks.py`` does), exports it with nbconvert to HTML without the saved
  widget state (``ClearMetadataPreprocessor``: what a viewer without the widget manager has),
  opens the file and checks that the explorer's PNG snapshot is displayed, at its size.
* ``test_notebook_renders`` opens every course notebook ``notebooks/[0-9]*.ipynb`` without
  running it: every cell is there, every stored output is displayed (images decode, widgets
  render from their saved state, or their stored snapshot where JupyterLab does not render
  the widget), and no error is shown; an explorer output's stored PNG snapshot is displayed,
  decoded at its stored size and laid out with a non-zero size.

Screenshots of each checked state go to ``artifacts/browser/``. The browser is
``/usr/bin/chromium`` (Debian package ``chromium``); playwright never downloads one. Without it
(or without playwright) the tests skip, except under CI (``CI=true``) where they fail.
JupyterLab runs on 127.0.0.1 with a token and throw-away config, runtime, data and settings
folders; the browser may reach nothing but that server.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-proxy-server",
                 "--disable-dev-shm-usage"]  # containers: a small /dev/shm crashes tabs
EXPLORER_NB = "explorer_check.ipynb"
SERVER_START_S = 90  # JupyterLab answering /api/status
RUN_ALL_S = 180  # the explorer notebook: kernel start, imports, first map
CHANGE_S = 60  # one widget change until the new map is displayed
RENDER_S = 60  # one course notebook until its cells and outputs are displayed

# Text that means an output failed, in any notebook (stderr alone is not an error: tqdm
# writes its progress bars there).
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RENDER_ERRORS = re.compile(r"Traceback|Error displaying widget|Javascript Error|"
                           r"No renderer could be found|Error rendering|Failed to load model")


def _unavailable(reason: str) -> None:
    """Skip on a user's machine; fail under CI, where the browser test must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, where the browser test must run (.ci/run installs "
                    "Debian's chromium; playwright comes with `pip install -e .[test]`)",
                    pytrace=False)
    pytest.skip(reason)


def _check_browser_available() -> None:
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no headless browser at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[test]')")


# ----------------------------------------------------------------------------- the notebooks
def _code(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source.strip())


# The explorer notebook's cells (OPTIONS: more keyword arguments of the explorer). CSS classes
# are added to the explorer's widgets so that the test finds them whatever the explorer's layout.
_EXPLORER_TEMPLATE = [
    """
import torch

torch.set_num_threads(1)
torch.manual_seed(0)
from gradcam_edu import models, weights
from gradcam_edu.explorer import Explorer
from gradcam_edu.shapes import CLASS_NAMES, render

if "resnet18-shapes" in weights.available_models():
    model, source = weights.load_model("resnet18-shapes"), "shipped resnet18-shapes"
else:  # a fresh clone without shipped weights: seeded random weights still give maps
    model, source = models.resnet18_narrow().eval(), "resnet18_narrow, seeded random weights"
samples = [render(0, "test", i) for i in range(3)]
print("model:", source)
""",
    """
ex = Explorer(model, [s.image for s in samples], CLASS_NAMES,
              masks=[torch.from_numpy(s.masks) for s in samples],
              classes=[s.classes for s in samples]OPTIONS)
opacity = getattr(ex, "alpha_slider", None) or getattr(ex, "opacity_slider")
for widget, name in [(ex.layer_slider, "gce-layer"), (ex.class_dropdown, "gce-class"),
                     (ex.method_dropdown, "gce-method"), (ex.overlay_image, "gce-overlay"),
                     (opacity, "gce-opacity"), (ex.mask_outline, "gce-outline"),
                     (ex.score_line, "gce-scores")]:
    widget.add_class(name)
ex
""",
    """
# run again by the test after its changes: the kernel's view of the widgets
import json

from gradcam_edu.views import plain

message = getattr(ex, "message", None)
print("STATE", json.dumps({**ex.state, "alpha": opacity.value,
                           "message": message.value if message is not None else "",
                           "outline": ex.mask_outline.value, "scores": ex.current_scores,
                           "score_line": plain(ex.score_line.value)}))
""",
]


def explorer_cells(options: str = "") -> list[str]:
    """:data:`EXPLORER_CELLS` with ``options`` (keyword arguments as source text, e.g.
    ``"image_format='png'"``) added to the ``Explorer(...)`` call."""
    return [src.replace("OPTIONS", f", {options}" if options else "")
            for src in _EXPLORER_TEMPLATE]


#: The explorer notebook's code cells, with the explorer's default options.
EXPLORER_CELLS = explorer_cells()


def write_explorer_notebook(path: Path, options: str = "",
                            extra_cells: Sequence[str] = ()) -> None:
    """The explorer notebook (:func:`explorer_cells` with ``options``), then ``extra_cells``
    (sources of code cells)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Explorer check (generated by the test)")]
    nb.cells += [_code(src) for src in [*explorer_cells(options), *extra_cells]]
    nbformat.write(nb, path)


# ----------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server on 127.0.0.1 serving ``root``; REST helpers with the token."""

    def __init__(self, root: Path, base: Path):
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "lab.log"
        # urllib must not send 127.0.0.1 through a proxy from the environment
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        settings = base / "settings"
        self._write_settings(settings)
        env = dict(os.environ)
        env.update(JUPYTER_CONFIG_DIR=str(base / "config"),
                   JUPYTER_RUNTIME_DIR=str(base / "runtime"),
                   # the venv's share/jupyter (kernels, widgets' labextension) stays on the
                   # path: it is sys.prefix's, not the user data dir's
                   JUPYTER_DATA_DIR=str(base / "data"),
                   JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
                   IPYTHONDIR=str(base / "ipython"),
                   MPLBACKEND="module://matplotlib_inline.backend_inline",
                   PYTHONUNBUFFERED="1")
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_CONFIG_PATH", None)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root}",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               # a safety net should this process die without stopping the server
               "--ServerApp.shutdown_no_activity_timeout=900"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")  # JupyterLab refuses to run as root without it
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    @staticmethod
    def _write_settings(folder: Path) -> None:
        """User settings: no news or update checks (no request leaves 127.0.0.1), and every
        cell attached to the DOM (no windowing), so that the test sees them all."""
        settings = {
            "@jupyterlab/apputils-extension/notification":
                {"fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        }
        for plugin, values in settings.items():
            path = folder / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def api(self, path: str, method: str = "GET", timeout: float = 10) -> object:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with self._opener.open(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def wait_ready(self, timeout: float = SERVER_START_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                self.api("/api/status", timeout=2)
                return
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.3)
        raise TimeoutError(f"JupyterLab did not answer within {timeout} s:\n{self.log_tail()}")

    def kernels_idle(self) -> bool:
        sessions = self.api("/api/sessions")
        return bool(sessions) and all(s["kernel"]["execution_state"] == "idle"
                                      for s in sessions)

    def stop_kernels(self) -> None:
        for s in self.api("/api/sessions"):
            self.api(f"/api/sessions/{s['id']}", method="DELETE", timeout=20)

    def stop(self) -> None:
        """Stop the server and everything it started (kernels run in sessions of their own,
        so the process tree is collected before the server goes)."""
        import psutil

        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for p in tree:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(tree, timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    _check_browser_available()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's screenshots only
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    for nb in NOTEBOOKS:
        shutil.copy2(nb, root / nb.name)
    write_explorer_notebook(root / EXPLORER_NB)
    server = Lab(root, base)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            b = launch_chromium(p)
        except Exception as e:  # noqa: BLE001 (report the launcher's message as it is)
            _unavailable(f"{CHROMIUM} does not start under playwright: {e}")
        try:
            yield b
        finally:
            b.close()


def launch_chromium(playwright):
    """Debian's headless Chromium under ``playwright`` (``sync_playwright()``'s object)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS, timeout=60_000)


def local_only(context, lab: Lab) -> list[str]:
    """Let the browser ``context`` reach nothing but ``lab``'s server (and files); returns
    the list the refused URLs are appended to."""
    allowed = urlsplit(lab.url).netloc
    blocked: list[str] = []

    def only_local(route):
        u = urlsplit(route.request.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.netloc != allowed:
            blocked.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", only_local)
    return blocked


@pytest.fixture
def page(browser, lab, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked = local_only(context, lab)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    console_errors: list[str] = []
    pg.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: console_errors.append(f"page error: {e}"))
    pg.blocked_requests = blocked
    pg.console_errors = console_errors
    failed_before = request.session.testsfailed
    try:
        yield pg
    finally:
        if request.session.testsfailed > failed_before:  # the test failed: keep what it saw
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            try:
                _shot(pg, f"FAILED-{name}")
            except Exception:  # noqa: BLE001 (a screenshot must not hide the failure)
                pass
        context.close()
        try:
            lab.stop_kernels()
        except (urllib.error.URLError, OSError, ValueError):
            pass


# ----------------------------------------------------------------------------- page helpers
def _shot(page, name: str, locator=None) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if locator is not None:
        locator.screenshot(path=str(path), timeout=15_000)
    else:
        page.screenshot(path=str(path), timeout=15_000)
    return path


def _open(page, lab: Lab, name: str) -> None:
    """Open a notebook of the server's root in a fresh workspace (``reset``)."""
    page.goto(f"{lab.url}/lab/tree/{quote(name)}?reset&token={lab.token}",
              wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=RENDER_S * 1000)


def _wait_kernel_idle(page, lab: Lab, timeout: float, settle: float = 1.0) -> None:
    """Wait until every kernel is idle, and stays so for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        if lab.kernels_idle():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= settle:
                return
        else:
            idle_since = None
        _raise_on_errors(page)
        page.wait_for_timeout(250)
    raise TimeoutError(f"kernel still busy after {timeout} s")


_ERRORS_JS = """(strict) => {
  // strict (the explorer notebook, whose outputs this test wrote): any "error" at all;
  // otherwise (course notebooks, which may print an error message on purpose): tracebacks
  // and failures to display an output
  const bad = strict ? /Traceback|\\berror\\b/i : PATTERN;
  const found = [];
  const add = (el) => found.push(el.innerText.slice(0, 3000));
  for (const el of document.querySelectorAll(
      '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')) {
    if (bad.test(el.innerText)) add(el);
  }
  for (const el of document.querySelectorAll('.jp-OutputArea-output')) {
    if (bad.test(el.innerText)) add(el);
  }
  return [...new Set(found)];
}""".replace("PATTERN", "/" + RENDER_ERRORS.pattern + "/")


def _errors_shown(page, strict: bool = True) -> list[str]:
    return page.evaluate(_ERRORS_JS, strict)


def _raise_on_errors(page, strict: bool = True) -> None:
    errors = _errors_shown(page, strict)
    assert not errors, "error output shown in the notebook:\n" + "\n---\n".join(errors)


_IMAGE_JS = """async (img) => {
  if (!img.complete || !img.naturalWidth || !img.src) return null;
  try {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return {sha256: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join(''),
            size: bytes.length, width: img.naturalWidth, height: img.naturalHeight};
  } catch (e) { return null; }  // src replaced (and the old blob URL revoked) meanwhile
}"""


def _image_state(img) -> dict | None:
    """Digest of the bytes behind the ``<img>`` (blob: or data: URL) and its decoded size."""
    return img.evaluate(_IMAGE_JS)


def _wait_image_change(page, img, before: dict, what: str, timeout: float = CHANGE_S) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _raise_on_errors(page)
        state = _image_state(img)
        if state is not None and state["sha256"] != before["sha256"]:
            return state
        page.wait_for_timeout(200)
    raise AssertionError(f"the displayed map did not change within {timeout} s after {what}")


def _select_other(select, prefer: tuple[str, ...] = ()) -> tuple[str, str]:
    """Choose an option other than the selected one (the first whose label contains one of
    ``prefer``, else the next one) the way a user does; returns (old label, new label)."""
    options = select.evaluate(
        "s => ({labels: Array.from(s.options, o => o.label), index: s.selectedIndex})")
    labels, index = options["labels"], options["index"]
    assert len(labels) >= 2, f"a dropdown with fewer than 2 options: {labels}"
    others = [i for i in range(len(labels)) if i != index]
    choice = others[0] if index < 0 else (index + 1) % len(labels)
    for word in prefer:
        hits = [i for i in others if word.lower() in labels[i].lower()]
        if hits:
            choice = hits[0]
            break
    select.select_option(index=choice)
    return (labels[index] if index >= 0 else ""), labels[choice]


def _tick(checkbox) -> tuple[str, str]:
    """Click an unticked checkbox, as a user does; returns ("off", "on")."""
    assert not checkbox.is_checked(), "the checkbox is already ticked"
    checkbox.click()
    assert checkbox.is_checked(), "the checkbox did not tick"
    return "off", "on"


def _move_slider(page, container, presses: int = 1) -> tuple[str, str]:
    """Move an ipywidgets slider ``presses`` steps with the arrow keys on its handle (to the
    left when it is at its maximum). Returns the readout before and after."""
    handle = container.locator(".noUi-handle").first
    readout = container.locator(".widget-readout").first
    old = readout.inner_text().strip()
    now = float(handle.get_attribute("aria-valuenow"))
    top = float(handle.get_attribute("aria-valuemax"))
    handle.focus()
    for _ in range(presses):
        page.keyboard.press("ArrowLeft" if now >= top else "ArrowRight")
    deadline = time.monotonic() + 10
    while readout.inner_text().strip() == old and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    new = readout.inner_text().strip()
    assert new != old, f"the slider's readout stayed at {old!r} after an arrow key"
    return old, new


def run_explorer_notebook(page, lab: Lab, name: str = EXPLORER_NB):
    """Open the explorer notebook ``name`` (:func:`write_explorer_notebook`), run all its
    cells from the menu bar (Run > Run All Cells) and wait until the kernel is idle with
    no error shown. Returns the overlay ``<img>``'s locator."""
    _open(page, lab, name)
    _wait_kernel_idle(page, lab, timeout=60)  # the kernel started and is ready
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    img = page.locator("img.gce-overlay")
    img.wait_for(state="visible", timeout=RUN_ALL_S * 1000)
    _wait_kernel_idle(page, lab, timeout=RUN_ALL_S)
    _raise_on_errors(page)
    return img


def rerun_cell(page, lab: Lab, text: str, prefix: str):
    """Run again (Shift+Enter in its editor) the cell whose source contains ``text``; its
    new output must print a line ``prefix`` + JSON. Returns (the cell's locator, the JSON
    value)."""
    cell = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell", has_text=text)
    out = cell.locator(".jp-OutputArea-output")
    before = out.inner_text() if out.count() else ""
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    deadline = time.monotonic() + CHANGE_S
    while (not out.count() or out.inner_text() == before) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    _wait_kernel_idle(page, lab, timeout=CHANGE_S)
    _raise_on_errors(page)
    shown = out.inner_text() if out.count() else ""
    line = next((t for t in shown.splitlines() if t.startswith(prefix)), None)
    assert line and shown != before, f"no new {prefix.strip()} line printed: {shown!r}"
    return cell, json.loads(line[len(prefix):])


# ----------------------------------------------------------------------------- tests
def test_explorer_in_browser(page, lab):
    started = time.monotonic()
    img = run_explorer_notebook(page, lab)
    widget = page.locator(".jp-OutputArea-output", has=img).first
    state = _image_state(img)
    assert state is not None and state["width"] > 0, "the overlay image does not decode"
    _shot(page, "explorer-0-initial")
    _shot(page, "explorer-0-initial-widget", widget)

    steps = [
        # two steps: the explorer lists a stage (layer4) next to its last block (layer4.1),
        # whose output is the same tensor, hence the same map
        ("layer", lambda: _move_slider(page, page.locator(".gce-layer"), presses=2)),
        ("class", lambda: _select_other(page.locator(".gce-class select"))),
        ("method", lambda: _select_other(page.locator(".gce-method select"),
                                         prefer=("LayerCAM", "Layer-CAM", "++", "XGrad"))),
        ("opacity", lambda: _move_slider(page, page.locator(".gce-opacity"))),
        ("outline", lambda: _tick(page.locator(".gce-outline input[type=checkbox]"))),
    ]
    chosen = []
    for i, (what, change) in enumerate(steps, start=1):
        old, new = change()
        chosen.append((old, new))
        state = _wait_image_change(page, img, state, f"changing the {what} ({old} -> {new})")
        _wait_kernel_idle(page, lab, timeout=CHANGE_S)
        state = _image_state(img) or state  # the settled map, for the next comparison
        _raise_on_errors(page)
        _shot(page, f"explorer-{i}-{what}", widget)
    _shot(page, "explorer-5-final")

    # the kernel saw what the browser did: re-run the last cell, which prints ex.state
    last, kernel = rerun_cell(page, lab, "the kernel's view of the widgets", "STATE ")
    print("kernel state:", kernel)
    _shot(page, "explorer-6-kernel-state", last)
    assert "error" not in kernel["message"].lower(), kernel["message"]
    seen = dict(zip(("layer", "class", "method", "opacity", "outline"), chosen, strict=True))
    assert kernel["outline"] is True and seen["outline"] == ("off", "on"), (kernel, seen)
    shown = " ".join(page.locator(".gce-scores").inner_text().split())
    assert shown == kernel["score_line"], (shown, kernel)   # the kernel's scores, on screen
    assert "scores" in shown and (kernel["scores"] is None) == ("no scores" in shown), shown
    if kernel["scores"] is not None:
        assert f"energy {kernel['scores']['energy']:.2f}" in shown, shown
    layers_moved = seen["layer"]
    assert kernel["class_name"] == seen["class"][1], (kernel, seen)
    assert kernel["alpha"] == pytest.approx(float(seen["opacity"][1])), (kernel, seen)
    method_label = page.locator(".gce-method select").evaluate(
        "s => s.options[s.selectedIndex].label")
    assert method_label == seen["method"][1], (method_label, seen)
    assert kernel["method"] != "gradcam", kernel  # the method left the first one
    assert int(layers_moved[1]) == page.locator(".gce-layer .noUi-handle").evaluate(
        "h => Number(h.getAttribute('aria-valuenow'))"), layers_moved
    assert not page.blocked_requests, f"requests outside 127.0.0.1: {page.blocked_requests}"
    print(f"explorer checked in the browser in {time.monotonic() - started:.1f} s")


def test_exported_html_shows_the_snapshot(page, tmp_path):
    """The explorer notebook executed as ``tools/build_notebooks.py`` does, exported to HTML
    without the saved widget state (what a viewer without the widget manager has): the
    explorer's output is its PNG snapshot, displayed at its size."""
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [_code(src) for src in EXPLORER_CELLS[:2]]          # the set-up, the explorer
    NotebookClient(nb, timeout=RUN_ALL_S, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    stored = [o["data"] for o in nb.cells[-1].outputs if WIDGET_MIME in o.get("data", {})]
    assert len(stored) == 1 and "image/png" in stored[0], nb.cells[-1].outputs
    config = Config()
    config.ClearMetadataPreprocessor.enabled = True            # drops the saved widget state
    config.ClearMetadataPreprocessor.clear_cell_metadata = False
    body, _ = HTMLExporter(config=config).from_notebook_node(nb)
    path = tmp_path / "explorer_check.html"
    path.write_text(body)
    page.goto(path.as_uri(), wait_until="load")
    images = page.locator(".jp-OutputArea-output img")
    images.first.wait_for(state="visible", timeout=RENDER_S * 1000)
    assert images.count() == 1 and page.locator(".jupyter-widgets").count() == 0
    shown = images.first.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
    # views.snapshot at display size 224, 6 classes: width 8 + (224 + 8) + (224 + 8) +
    # (224 + 74 + 8) + 250 + 8 = 1036, height 4 * 8 + 3 * 14 + max(2 * 14 + 224, 14 * 7) = 326
    assert shown == [True, 1036, 326], shown
    _shot(page, "html-export-snapshot", images.first)
    # shown offline: nbconvert's page asks CDNs for require.js and MathJax (blocked here),
    # never for the widget manager
    assert not [u for u in page.blocked_requests if "widget" in u], page.blocked_requests


_CELLS_JS = """() => Array.from(
  document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell'), (c) => ({
    kind: c.classList.contains('jp-CodeCell') ? 'code'
        : c.classList.contains('jp-MarkdownCell') ? 'markdown' : 'raw',
    outputs: c.querySelectorAll('.jp-OutputArea-output').length,
    rendered_markdown: c.querySelectorAll('.jp-MarkdownOutput').length,
    images: Array.from(c.querySelectorAll('.jp-OutputArea-output img'), (i) => {
      const r = i.getBoundingClientRect(), style = getComputedStyle(i);
      return {ok: i.complete && i.naturalWidth > 0, src: i.src.slice(0, 40),
              size: [i.naturalWidth, i.naturalHeight],
              visible: r.width > 0 && r.height > 0 && style.visibility !== 'hidden'};
    }),
    math_errors: c.querySelectorAll('mjx-merror, .MathJax_Error').length,
    widgets: c.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
    output_text: Array.from(c.querySelectorAll('.jp-OutputArea-output'), (o) => o.innerText)
                      .join('\\n'),
    output_html: Array.from(c.querySelectorAll('.jp-OutputArea-output'), (o) => o.outerHTML)
                      .join('').slice(0, 400),
    errors: Array.from(c.querySelectorAll('.jp-OutputArea-output'), (o) => o.innerText)
                 .filter((t) => PATTERN.test(t)).map((t) => t.slice(0, 2000)),
  }))""".replace("PATTERN", "/" + RENDER_ERRORS.pattern + "/")


#: what ``_widget_fallback`` says of a widget output stored with a PNG snapshot
SNAPSHOT = "<the stored image/png snapshot>"


def _widget_fallback(cell) -> str:
    """What JupyterLab shows instead of a widget in a notebook that is not trusted (a fresh
    clone's notebooks are not): the output's image/png snapshot when it has one (a safe type,
    preferred to text: :data:`SNAPSHOT`), else the start of its text/plain."""
    for o in cell.get("outputs", []):
        if WIDGET_MIME in o.get("data", {}):
            if "image/png" in o["data"]:
                return SNAPSHOT
            return str(o["data"].get("text/plain", "")).split("\n")[0][:40]
    return ""


def _snapshot_size(cell) -> list[int] | None:
    """[width, height] of the PNG snapshot stored with the cell's widget output, or None."""
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if WIDGET_MIME in data and "image/png" in data:
            raw = base64.b64decode(data["image/png"])
            return [int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")]
    return None


def _fallback_shown(cell: dict, fallback: str, size: list[int] | None = None) -> bool:
    """The displayed cell (``_CELLS_JS``) shows the widget's ``fallback``: for the
    :data:`SNAPSHOT`, an image decoded (at ``size``, [width, height], when given) and laid
    out with a non-zero size."""
    if fallback == SNAPSHOT:
        return any(i["ok"] and i["visible"] and (size is None or i["size"] == size)
                   for i in cell["images"])
    return bool(fallback) and fallback in cell["output_text"]


def _raises_on_purpose(cell) -> bool:
    """A cell that shows an exception on purpose (nbval's marks)."""
    return ("raises-exception" in cell.get("metadata", {}).get("tags", [])
            or "NBVAL_RAISES_EXCEPTION" in cell.source)


@pytest.mark.parametrize("notebook", NOTEBOOKS or [None], ids=lambda p: p.name if p else "none")
def test_notebook_renders(page, lab, notebook):
    if notebook is None:
        pytest.skip("no course notebooks in notebooks/ yet")
    # the copy the server shows (notebooks/ may be rebuilt while the test runs)
    nb = nbformat.read(lab.root / notebook.name, as_version=4)
    for i, cell in enumerate(nb.cells):
        stored = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if stored and not _raises_on_purpose(cell):
            pytest.fail(f"{notebook.name}, cell {i} stores an error output without the "
                        f"'raises-exception' tag: {stored[0].get('ename')}: "
                        f"{stored[0].get('evalue')}", pytrace=False)
    _open(page, lab, notebook.name)
    expected = [(c.cell_type, len(c.get("outputs", [])) > 0) for c in nb.cells]
    with_widgets = [any(WIDGET_MIME in o.get("data", {}) for o in c.get("outputs", []))
                    for c in nb.cells]
    fallbacks = [_widget_fallback(c) for c in nb.cells]
    snapshots = [_snapshot_size(c) for c in nb.cells]
    deadline = time.monotonic() + RENDER_S
    while True:  # cells attach, outputs and images load, widgets render from saved state
        cells = page.evaluate(_CELLS_JS)
        got = [(c["kind"], c["outputs"] > 0) for c in cells]
        images_ok = all(i["ok"] for c in cells for i in c["images"])
        widgets_ok = len(cells) == len(nb.cells) and all(
            (c["widgets"] and not z) or c["errors"] or _fallback_shown(c, f, z)
            for c, w, f, z in zip(cells, with_widgets, fallbacks, snapshots, strict=True)
            if w)
        if (got == expected and images_ok and widgets_ok) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(300)
    page.wait_for_timeout(1000)  # MathJax typesets asynchronously; widgets restore
    cells = page.evaluate(_CELLS_JS)
    stem = notebook.stem
    _shot(page, f"notebook-{stem}-top")
    figures = page.locator(".jp-OutputArea-output:has(img)")
    for k in range(min(figures.count(), 2)):
        _shot(page, f"notebook-{stem}-figure-{k + 1}", figures.nth(k))
    for k, i in enumerate([i for i, w in enumerate(with_widgets) if w][:2]):
        _shot(page, f"notebook-{stem}-widget-{k + 1}",
              page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(i))
    assert len(cells) == len(nb.cells), (
        f"{notebook.name}: {len(cells)} cells displayed, {len(nb.cells)} in the file")
    problems = []
    for i, (cell, (kind, has_outputs)) in enumerate(zip(cells, expected, strict=True)):
        where = f"cell {i}"
        if cell["kind"] != kind:
            problems.append(f"{where}: displayed as {cell['kind']}, stored as {kind}")
        if has_outputs and not cell["outputs"]:
            problems.append(f"{where}: its stored outputs are not displayed")
        if kind == "markdown" and nb.cells[i].source.strip() and not cell["rendered_markdown"]:
            problems.append(f"{where}: markdown not rendered")
        broken = [im["src"] for im in cell["images"] if not im["ok"]]
        if broken:
            problems.append(f"{where}: images that do not decode: {broken}")
        if snapshots[i] and not _fallback_shown(cell, SNAPSHOT, snapshots[i]):
            # a notebook opened without running (not trusted): the stored snapshot, visible
            problems.append(f"{where}: its stored {snapshots[i][0]}x{snapshots[i][1]} PNG "
                            f"snapshot is not displayed; images shown: {cell['images']}")
        elif with_widgets[i] and not cell["widgets"] and not _fallback_shown(cell,
                                                                          fallbacks[i]):
            saved = "saved" if "widgets" in nb.metadata else "NOT saved"
            problems.append(f"{where}: its widget is not displayed (widget state {saved} "
                            f"in the notebook's metadata); shown: {cell['output_html']!r}")
        if cell["math_errors"]:
            problems.append(f"{where}: {cell['math_errors']} LaTeX errors shown")
        if cell["errors"] and not _raises_on_purpose(nb.cells[i]):
            problems.append(f"{where}: error shown: {cell['errors'][0][:600]}")
        if _raises_on_purpose(nb.cells[i]) and has_outputs and not cell["errors"]:
            problems.append(f"{where}: its exception (shown on purpose) is not displayed")
    assert not problems, f"{notebook.name} (see artifacts/browser/notebook-{stem}-*.png):\n" \
        + "\n".join(problems)
    assert not page.blocked_requests, f"requests outside 127.0.0.1: {page.blocked_requests}"
