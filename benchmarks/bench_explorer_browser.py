"""The live explorer's latency as the learner sees it: JupyterLab in headless Chromium.

    python benchmarks/bench_explorer_browser.py [--image-format jpeg|png|both] [--changes 30]
                                                [--kinds layer method opacity class image]

Reuses the real-browser harness of ``tests/test_browser.py`` (its JupyterLab server, its
explorer notebook on three shapes images with their masks, Debian's ``/usr/bin/chromium``
under playwright, nothing reachable but the server). The explorer runs as in the course
notebooks (one torch thread) with the gradient cache off (``cache_mb=0``: every class change
runs its backward, every image change its forward and backward: the worst case).

For each kind of change (layer, method, opacity, class, image), ``--changes`` changes (after
3 not counted) are made the way a learner makes them: arrow keys on the focused slider handle
(layer, opacity, image; a layer whose output is the previous one's, hence the same map, is
stepped over), an option chosen in the ``<select>`` (the next method; for the class, the top
class and each other in turn, alternately, so that every change draws a new map). Latency
is measured in the page with ``performance.now()``: from the input event (``keydown``;
``input`` for a select) to the overlay ``<img>``'s new ``src`` decoded (``img.decode()``) and
painted (the task after the next animation frame), so playwright's round trips are not
counted. Bytes per update: the kernel websocket's frames received from the change until
300 ms without a frame (every widget the change redraws, the echo of the new value, the
kernel's status messages). Where the time goes: the kernel's ``ex.last_update_ms`` per
change, the page's time from the event to the new ``src`` (kernel + messages + widget code)
and from the ``src`` to painted (decode + paint).

Goals (issue 12): median <= 100 ms for layer, method and opacity, <= 200 ms for class and
image. The kernel-side benchmark is ``benchmarks/bench_explorer.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import test_browser as harness  # noqa: E402 (the harness lives with the tests)

KINDS = ("layer", "method", "opacity", "class", "image")
GOALS_MS = {"layer": 100, "method": 100, "opacity": 100, "class": 200, "image": 200}
WARM_UP = 3
CHANGE_TIMEOUT_S = 10  # no new overlay within this: a change that drew nothing new
QUIET_S = 0.3  # the frames of one change have all arrived after this long without one

#: after the explorer: what the benchmark needs from the kernel
PROBE_CELL = """
# the benchmark's probes: the explorer's layers, the kernel's time of each update
import json

from gradcam_edu.layers import same_output_as

kernel_ms = []
for kind, w in [("layer", ex.layer_slider), ("method", ex.method_dropdown),
                ("opacity", opacity), ("class", ex.class_dropdown),
                ("image", ex.image_slider)]:
    w.observe(lambda change, kind=kind: kernel_ms.append([kind, ex.last_update_ms]), "value")
ex.image_slider.add_class("gce-image")
print("LAYERS", json.dumps({"layers": ex.layers, "same": same_output_as(model, ex.layers)}))
"""
REPORT_CELL = """
# the kernel's update times, for the benchmark
print("KERNEL", json.dumps(kernel_ms))
"""

# In the page: timestamps of the input events and of the overlay's new src, decoded, painted.
INSTALL_JS = """(img) => {
  const g = window.__gce = {armed: false};
  for (const type of ['keydown', 'input', 'change']) {
    window.addEventListener(type, () => {
      if (g.armed) g.events.push([type, performance.now()]);
    }, {capture: true});
  }
  new MutationObserver(() => {
    if (!g.armed || g.src !== null) return;
    g.src = performance.now();
    img.decode().then(() => {
      g.decoded = performance.now();
      requestAnimationFrame(() => {       // the frame that paints the new image...
        const ch = new MessageChannel();  // ...and the task right after it
        ch.port1.onmessage = () => { g.painted = performance.now(); g.done = true; };
        ch.port2.postMessage(null);
      });
    }, (err) => { g.error = String(err); g.done = true; });
  }).observe(img, {attributes: true, attributeFilter: ['src']});
}"""
ARM_JS = """() => Object.assign(window.__gce, {events: [], src: null, decoded: null,
                                            painted: null, error: null, done: false,
                                            armed: true})"""
READ_JS = """() => { const g = window.__gce; g.armed = false;
  return {events: g.events, src: g.src, decoded: g.decoded, painted: g.painted,
          error: g.error}; }"""
BLOB_SIZE_JS = "async (i) => (await (await fetch(i.src)).blob()).size"


class Frames:
    """Sizes of the websocket frames the page receives from the kernel."""

    def __init__(self, page):
        self.sizes: list[int] = []
        page.on("websocket", self._watch)

    def _watch(self, ws) -> None:
        if "/api/kernels/" in ws.url:
            ws.on("framereceived", lambda payload: self.sizes.append(
                len(payload.encode() if isinstance(payload, str) else payload)))

    def wait_quiet(self, page) -> None:
        seen, since = len(self.sizes), time.monotonic()
        while time.monotonic() - since < QUIET_S:
            page.wait_for_timeout(50)
            if len(self.sizes) != seen:
                seen, since = len(self.sizes), time.monotonic()


class Slider:
    """An ipywidgets slider moved with the arrow keys on its handle, back and forth."""

    def __init__(self, page, css: str):
        self.page = page
        self.handle = page.locator(f"{css} .noUi-handle").first
        self.lo, self.hi, self.now = (float(self.handle.get_attribute(a)) for a in (
            "aria-valuemin", "aria-valuemax", "aria-valuenow"))
        self.step = 1.0
        self.direction = 1

    def press(self, steps: int = 1) -> None:
        self.handle.focus()
        key = "ArrowRight" if self.direction > 0 else "ArrowLeft"
        for _ in range(steps):
            self.page.keyboard.press(key)


def layer_mover(page, layers: list[str], same: dict[str, str]):
    """One layer change: a step of the slider, two where the next layer's output is the
    current one's (the same map: nothing new to draw)."""
    group = {name: same.get(name, name) for name in layers}
    slider = Slider(page, ".gce-layer")
    index = int(slider.now)

    def move() -> None:
        nonlocal index
        for _ in range(2):
            target = index + slider.direction
            while 0 <= target < len(layers) and group[layers[target]] == group[layers[index]]:
                target += slider.direction
            if 0 <= target < len(layers):
                break
            slider.direction = -slider.direction
        slider.press(abs(target - index))
        index = target
    return move


def value_mover(page, css: str, step: float):
    """One step of a slider, turning back at its ends."""
    slider = Slider(page, css)
    value = slider.now

    def move() -> None:
        nonlocal value
        if not slider.lo <= value + step * slider.direction <= slider.hi + 1e-9:
            slider.direction = -slider.direction
        slider.press()
        value += step * slider.direction
    return move


def select_mover(page, css: str):
    """The next option of a ``<select>`` (wrapping around), chosen as a user does."""
    select = page.locator(f"{css} select")

    def move() -> None:
        n, index = select.evaluate("s => [s.options.length, s.selectedIndex]")
        select.select_option(index=(index + 1) % n)
    return move


def class_mover(page, css: str):
    """Another class, as a user does: the first shown (the top class) and each other in turn,
    alternately. (Two classes absent from the image both have a blank map, hence the same
    overlay: the kernel then sends no new image, and there is nothing to time.)"""
    select = page.locator(f"{css} select")
    home, n = select.evaluate("s => [s.selectedIndex, s.options.length]")
    others = iter([i for _ in range(1000) for i in range(n) if i != home])

    def move() -> None:
        index = select.evaluate("s => s.selectedIndex")
        select.select_option(index=next(others) if index == home else home)
    return move


def measure(page, img, frames: Frames, move, trigger: str, n: int) -> dict:
    """``n`` changes by ``move`` (after the warm-up ones): in-page times and bytes."""
    out = {"ms": [], "to_src": [], "to_paint": [], "bytes": [], "image_bytes": [], "missed": 0}
    for k in range(WARM_UP + n):
        page.evaluate(ARM_JS)
        first = len(frames.sizes)
        move()
        try:
            page.wait_for_function("() => window.__gce.done", polling=20,
                                   timeout=CHANGE_TIMEOUT_S * 1000)
        except Exception:  # noqa: BLE001 (playwright's TimeoutError: nothing new drawn)
            pass
        got = page.evaluate(READ_JS)
        frames.wait_quiet(page)
        if k < WARM_UP:
            continue
        times = [t for kind, t in got["events"] if kind == trigger and t <= (got["src"] or 0)]
        if got["painted"] is None or got["error"] or not times:
            out["missed"] += 1
            continue
        out["ms"].append(got["painted"] - times[-1])
        out["to_src"].append(got["src"] - times[-1])
        out["to_paint"].append(got["painted"] - got["src"])
        out["bytes"].append(sum(frames.sizes[first:]))
        out["image_bytes"].append(img.evaluate(BLOB_SIZE_JS))
    return out


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 \
        else values[0]


def bench_format(page, lab, frames: Frames, fmt: str, n: int,
                 kinds: tuple[str, ...] = KINDS) -> dict[str, dict]:
    name = f"explorer_bench_{fmt}.ipynb"
    harness.write_explorer_notebook(lab.root / name, options=f"image_format={fmt!r}, "
                                    "cache_mb=0", extra_cells=[PROBE_CELL, REPORT_CELL])
    img = harness.run_explorer_notebook(page, lab, name)
    text = page.locator(".jp-Cell", has_text="the benchmark's probes").inner_text()
    line = next(t for t in text.splitlines() if t.startswith("LAYERS "))
    layers = json.loads(line[len("LAYERS "):])
    page.evaluate(INSTALL_JS, img.element_handle())
    movers = {k: v for k, v in {
        "layer": (layer_mover(page, layers["layers"], layers["same"]), "keydown"),
        "method": (select_mover(page, ".gce-method"), "input"),
        "opacity": (value_mover(page, ".gce-opacity", 0.05), "keydown"),
        "class": (class_mover(page, ".gce-class"), "input"),
        "image": (value_mover(page, ".gce-image", 1), "keydown"),
    }.items() if k in kinds}
    results = {kind: measure(page, img, frames, move, trigger, n)
               for kind, (move, trigger) in movers.items()}
    harness._raise_on_errors(page)
    _, kernel = harness.rerun_cell(page, lab, "the kernel's update times", "KERNEL ")
    for kind in results:
        results[kind]["kernel"] = [ms for k, ms in kernel if k == kind]
    harness._shot(page, f"bench-explorer-{fmt}")
    lab.stop_kernels()
    return results


def report(fmt: str, results: dict[str, dict]) -> None:
    print(f"\nimage format {fmt}: ms from the input event in Chromium to the new overlay "
          "decoded and painted")
    print(f"{'kind':<8}{'n':>4}{'median ms':>11}{'p90 ms':>8}{'bytes/update':>14}"
          f"{'goal ms':>9}  met?")
    for kind, r in results.items():
        if not r["ms"]:
            print(f"{kind:<8}{0:>4}  no change drew a new overlay ({r['missed']} missed)")
            continue
        med = statistics.median(r["ms"])
        print(f"{kind:<8}{len(r['ms']):>4}{med:>11.1f}{p90(r['ms']):>8.1f}"
              f"{statistics.median(r['bytes']):>14,.0f}{GOALS_MS[kind]:>9}  "
              f"{'yes' if med <= GOALS_MS[kind] else 'NO'}"
              + (f"  ({r['missed']} changes drew nothing new)" if r["missed"] else ""))
    print("where the time goes (medians): kernel = ex.last_update_ms; event -> src = kernel + "
          "messages + widget code; src -> painted = decode + paint")
    print(f"{'kind':<8}{'kernel ms':>11}{'event->src':>12}{'src->painted':>14}"
          f"{'overlay bytes':>15}")
    for kind, r in results.items():
        if r["ms"]:
            kernel = f"{statistics.median(r['kernel']):.1f}" if r["kernel"] else "-"
            print(f"{kind:<8}{kernel:>11}{statistics.median(r['to_src']):>12.1f}"
                  f"{statistics.median(r['to_paint']):>14.1f}"
                  f"{statistics.median(r['image_bytes']):>15,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-format", choices=("jpeg", "png", "both"), default="both",
                        help="Explorer(image_format=...) of the image and overlay views")
    parser.add_argument("--changes", type=int, default=30, help="measured changes per kind")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                        help="the kinds of change to measure (default: all)")
    args = parser.parse_args()
    if args.changes < 2:
        parser.error(f"--changes: expected at least 2, got {args.changes}")
    if not harness.CHROMIUM.is_file():
        sys.exit(f"no headless browser at {harness.CHROMIUM} (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    formats = ("jpeg", "png") if args.image_format == "both" else (args.image_format,)
    loadavg = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-explorer-browser-") as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        lab = harness.Lab(base / "root", base)
        try:
            lab.wait_ready()
            with sync_playwright() as p:
                browser = harness.launch_chromium(p)
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                blocked = harness.local_only(context, lab)
                page = context.new_page()
                page.set_default_timeout(30_000)
                frames = Frames(page)
                print(f"JupyterLab {lab.url} in headless Chromium {browser.version}; "
                      f"{os.cpu_count()} CPUs (load average {loadavg}: other jobs share them); "
                      f"{args.changes} changes of each kind after {WARM_UP} not counted")
                for fmt in formats:
                    report(fmt, bench_format(page, lab, frames, fmt, args.changes,
                                             tuple(args.kinds)))
                browser.close()
            assert not blocked, f"requests outside 127.0.0.1: {blocked}"
        finally:
            lab.stop()


if __name__ == "__main__":
    main()
