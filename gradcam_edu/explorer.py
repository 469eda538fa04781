"""The live explorer: one image, one class, every layer, every method, with ipywidgets.

    from gradcam_edu.explorer import Explorer
    ex = Explorer(model, ShapesDataset("test", 50), CLASS_NAMES)
    ex                                # shows the widget (last expression of a cell)
    ex.layer_slider.value = 5         # or ex.set(layer="layer4.1", method="hirescam")

Why it is fast: per image the model runs ONCE, recording every explorer layer with its
autograd graph (:class:`gradcam_edu.session.Session`; no hook outlives the forward). A new
class costs one backward over all layers at once (cached per (image, class), bounded), and a
change of layer, method or opacity is a pure function of cached tensors plus a redraw of the
images it changes (:mod:`gradcam_edu.render`, no matplotlib).

Views: the input image, the map (ReLU, min-max, bilinear to the image size) over the image,
the raw signed map at the layer's own grid (nearest-neighbour, so the grid is visible) with a
colour bar of its value range, and the model's class probabilities (sigmoid for multi-label
models, softmax otherwise: :func:`gradcam_edu.models.probability_kind`).

Given the objects' masks (the shapes world), the overlay outlines them on request and a line
under the map gives its scores, by the scoreboard's functions (energy, pointing within 15 px,
target share). The display bundle holds the live widget and a PNG snapshot of the view
(:meth:`Explorer.snapshot`), which viewers without a kernel or widget state show instead.

``ex.state``, ``ex.current_map``, ``ex.current_scores`` and ``ex.counts`` (forwards /
backwards run) make it testable without a browser: set any widget's ``value`` from Python
and read them back.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import torch
from PIL import Image
from torch import nn

from . import cams, render, views
from .images import as_image_tensor, decode_image, encode, to_uint8
from .layers import same_output_as
from .render import Display
from .session import Budget, GroundTruth, ImageList, Selection, Session, group_options
from .threads import torch_threads

__all__ = ["Budget", "Display", "Explorer", "Selection"]

Preprocess = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- the explorer
class Explorer:
    """An interactive Grad-CAM explorer over the layers of ``model``.

    model: logits ``(N, K)`` from images ``(N, 3, S, S)``. images: a data set whose items are
    ``(image, label)`` (e.g. :class:`~gradcam_edu.shapes.ShapesDataset`), a float tensor
    ``(N, 3, H, W)`` in [0, 1], arrays, or a list of PIL images; each is resized/centre-
    cropped to ``image_size``. class_names: K names (None: "0", "1", ...). layers: capture
    names (``"name#k"`` for a reused module), ``"all"`` for every layer with a 4-D output, or
    None for :func:`gradcam_edu.layers.default_layers`. methods: names of
    :data:`gradcam_edu.cams.METHODS` (default: :data:`~gradcam_edu.cams.GRADIENT_METHODS`);
    one that needs extra forwards (``"scorecam"``) is computed on demand and cached, one
    that cannot explain a layer (``"cam"`` away from the head) says so in the widget.
    probabilities: ``"sigmoid"``, ``"softmax"`` or ``"auto"`` (the model's own:
    :func:`gradcam_edu.models.probability_kind`). preprocess: applied to the [0, 1] images
    before the model (e.g. :func:`gradcam_edu.images.imagenet_normalize`); the views always
    show the [0, 1] image. masks, classes: the given images' objects, both or neither, as
    :func:`gradcam_edu.shapes.shapes_sample` returns them (``masks[i]`` bool ``(K_i, H, W)``
    aligned with ``classes[i]``), for the outline toggle and the scores line
    (:class:`gradcam_edu.session.GroundTruth`).

    Keyword options, by group: :class:`Selection` (``image``, ``layer``, ``method``,
    ``target``, ``alpha``), :class:`Display` (``display_size``, ``cmap``, ``image_format``),
    :class:`Budget` (``cache_mb``, ``score_cam_batch``, ``threads``); kept as
    ``ex.display`` and ``ex.budget``.

    Widgets: ``image_slider``, ``upload``, ``class_dropdown``, ``top_class``,
    ``method_dropdown``, ``layer_slider`` (+ ``layer_label``), ``alpha_slider``,
    ``mask_outline`` (shown with masks); views ``input_image``, ``overlay_image``,
    ``raw_image`` (ipywidgets.Image), ``probabilities``, ``score_line`` (shown with masks),
    captions and ``message`` (ipywidgets.HTML); all in ``widget``.
    """

    def __init__(self, model: nn.Module, images, class_names: Sequence[str] | None = None,
                 layers: Sequence[str] | str | None = None,
                 methods: Sequence[str] | None = None, image_size: int = 224,
                 probabilities: str = "auto", preprocess: Preprocess | None = None,
                 masks: Sequence | None = None, classes: Sequence[Sequence[int]] | None = None,
                 **options):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        start, self.display, self.budget = group_options(options)
        self.model, self.preprocess = model, preprocess
        self.image_size = int(image_size)
        self.display_size = int(self.display.display_size or max(self.image_size, 224))
        self.cmap, self.image_format = self.display.cmap, self.display.image_format
        self.images = ImageList(images, self.image_size)
        self.truth = GroundTruth.given(masks, classes, len(self.images), self.image_size)
        self.methods = cams.check_methods(methods if methods is not None
                                          else list(cams.GRADIENT_METHODS))
        #: milliseconds spent in the last update (from a value change to the new images)
        self.last_update_ms = 0.0
        if not 0 <= start.image < len(self.images):
            raise IndexError(f"image: index {start.image} out of range "
                             f"(0 to {len(self.images) - 1})")
        self.session = Session(model, self.images, layers, class_names, probabilities,
                               preprocess, self.budget, image=start.image)
        self.layers, self.class_names = self.session.layers, self.session.class_names
        self.probability_kind = self.session.probability_kind
        self._same_as = same_output_as(model, self.layers)
        layer = self.layers[self._layer_index(start.layer or self.layers[-1])]
        method = start.method or self.methods[0]
        cams.check_method(method, self.methods, "method")
        cls = (self.session.top_class() if start.target is None
               else self.session.class_index(start.target))
        self._map_message, self._scores = False, None
        self._load_error: str | None = None  # why the last image change failed, if it did
        self._build_widgets(start.image, layer, cls, method, start.alpha,
                            follow_top=start.target is None)
        self._update(grads=True, maps=True, image=True)
        self._observe()

    def _build_widgets(self, image: int, layer: str, cls: int, method: str, alpha: float,
                       follow_top: bool) -> None:
        d = self.display_size
        self.image_slider = widgets.IntSlider(
            value=image, min=0, max=len(self.images) - 1, description="image",
            continuous_update=False)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False,
                                         description="your image")
        self.class_dropdown = widgets.Dropdown(
            options=[(n, i) for i, n in enumerate(self.class_names)], value=cls,
            description="class")
        self.top_class = widgets.Checkbox(value=follow_top, description="follow top class",
                                          indent=False)
        self.method_dropdown = widgets.Dropdown(
            options=[(cams.METHOD_TITLES[m], m) for m in self.methods], value=method,
            description="method")
        self.layer_slider = widgets.IntSlider(
            value=self.layers.index(layer), min=0, max=len(self.layers) - 1,
            description="layer", continuous_update=True)
        self.layer_label = widgets.HTML()
        self.alpha_slider = widgets.FloatSlider(
            value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
            continuous_update=True)
        shown = None if self.truth else "none"  # the measuring widgets need masks
        self.mask_outline = widgets.Checkbox(value=False, description="object outline",
                                             indent=False, layout={"display": shown})
        self.score_line = widgets.HTML(layout={"width": f"{d}px", "display": shown})
        layout = widgets.Layout(width=f"{d}px", height=f"{d}px")
        self.input_image = widgets.Image(format=self.image_format, layout=layout)
        self.overlay_image = widgets.Image(format=self.image_format, layout=layout)
        self.raw_image = widgets.Image(format="png", layout=widgets.Layout(height=f"{d}px"))
        # fixed two-line captions keep the three images aligned
        self.input_caption = widgets.HTML(layout=widgets.Layout(width=f"{d}px", height="36px"))
        self.overlay_caption = widgets.HTML(layout=widgets.Layout(width=f"{d}px",
                                                                  height="36px"))
        self.raw_caption = widgets.HTML(layout=widgets.Layout(width=f"{d + 80}px",
                                                              height="36px"))
        self.probabilities = widgets.HTML(layout=widgets.Layout(min_width="260px"))
        self.message = widgets.HTML()
        self.widget = widgets.VBox([
            widgets.HBox([self.image_slider, self.upload]),
            widgets.HBox([self.class_dropdown, self.top_class, self.method_dropdown]),
            widgets.HBox([self.layer_slider, self.layer_label, self.alpha_slider,
                          self.mask_outline]),
            widgets.HBox([
                widgets.VBox([self.input_caption, self.input_image]),
                widgets.VBox([self.overlay_caption, self.overlay_image, self.score_line]),
                widgets.VBox([self.raw_caption, self.raw_image]),
                widgets.VBox([self.probabilities]),
            ]),
            self.message,
        ])

    def _observe(self) -> None:
        self.image_slider.observe(self._on_image, "value")
        self.class_dropdown.observe(self._on_class, "value")
        self.top_class.observe(self._on_top_class, "value")
        self.method_dropdown.observe(self._on_map_change, "value")
        self.layer_slider.observe(self._on_map_change, "value")
        self.alpha_slider.observe(self._on_alpha, "value")
        self.mask_outline.observe(self._on_alpha, "value")  # a redraw of the overlay only
        self.upload.observe(self._on_upload, "value")

    # -- the public state ----------------------------------------------------------------
    @property
    def state(self) -> dict:
        """The current selection: image index, layer name, class index and name, method,
        opacity."""
        cls = self.class_dropdown.value
        return {"image": self.image_slider.value, "layer": self.layers[self.layer_slider.value],
                "class": cls, "class_name": self.class_names[cls],
                "method": self.method_dropdown.value, "alpha": self.alpha_slider.value}

    @property
    def current_map(self) -> torch.Tensor | None:
        """The displayed map (S, S) in [0, 1] (S = image_size); None when the method cannot
        explain the current layer (the widget's message says why)."""
        return self._map

    @property
    def current_scores(self) -> dict | None:
        """The scores under the map, of :attr:`current_map`
        (:meth:`gradcam_edu.session.GroundTruth.scores`); None where the line says why."""
        return dict(self._scores) if self._scores is not None else None

    @property
    def counts(self) -> dict[str, int]:
        """Model work so far: recorded forwards (one per image shown), backwards (one per
        new (image, class)) and extra forward batches (methods that need them)."""
        return self.session.counts

    def set(self, image: int | None = None, layer: str | int | None = None,
            target: int | str | None = None, method: str | None = None,
            alpha: float | None = None) -> Explorer:
        """Change the selection from code (each change runs as if made in the widgets); an
        image that cannot be shown raises ``ValueError`` (the explorer stays as it was)."""
        if image is not None:
            self._load_error = None
            self.image_slider.value = int(image)
            if self._load_error is not None:  # the widget shows it too
                raise ValueError(self._load_error)
        if layer is not None:
            self.layer_slider.value = self._layer_index(layer)
        if target is not None:
            self.class_dropdown.value = self.session.class_index(target)
        if method is not None:
            cams.check_method(method, self.methods, "method")
            self.method_dropdown.value = method
        if alpha is not None:
            self.alpha_slider.value = float(alpha)
        return self

    def _layer_index(self, layer: str | int) -> int:
        if not isinstance(layer, str):
            return int(layer)
        if layer not in self.layers:
            raise ValueError(f"layer: {layer!r} is not one of the explorer's layers: "
                             f"{', '.join(self.layers)}")
        return self.layers.index(layer)

    def add_image(self, image, name: str = "uploaded image") -> int:
        """Append an image (file bytes, PIL image, array or (3, H, W) tensor in [0, 1]) and
        show it. Returns its index. ``ValueError`` when bytes are not a readable image (or too
        large) or when the model's input check refuses it; nothing is added then."""
        if isinstance(image, bytes | bytearray | memoryview):
            x = decode_image(bytes(image), self.image_size, name=repr(name))
        else:
            x = as_image_tensor(image, self.image_size)
        index = self.images.append(x, name)
        self.image_slider.max = len(self.images) - 1
        self._load_error = None
        self.image_slider.value = index
        if self.session.index != index:  # refused by the model's input check: not kept
            self.images.drop_last()
            self.image_slider.max = len(self.images) - 1
            raise ValueError(self._load_error or f"{name} cannot be shown")
        return index

    # -- model work ------------------------------------------------------------------------
    def _compute_map(self) -> None:
        """The current selection's raw map and displayed map, or why there is none."""
        s = self.state  # a map error of a method of (A, G) is a bug: shown by _timed
        self._raw, self._map, self._unavailable = self.session.display_map(
            s["layer"], s["method"], s["class"], self.image_size)
        note = self._unavailable or self.session.note
        if note:
            colour = "#b00" if self._unavailable else "inherit"
            self.message.value = f"<span style='color:{colour}'>{html.escape(note)}</span>"
        elif self._map_message:
            self.message.value = ""
        self._map_message = bool(note)

    # -- drawing ---------------------------------------------------------------------------
    def _draw_overlay(self) -> None:
        """(1 - alpha) image + alpha coloured map, as :func:`gradcam_edu.viz.overlay`; the
        objects' outlines on top when the toggle is on (white: the selected class)."""
        blend = Image.blend(self._rgb_img, self._heat_img, float(self.alpha_slider.value))
        if self.mask_outline.value:
            views.draw_outlines(blend, self._outlines, self.class_dropdown.value)
        self._overlay_img = blend
        self.overlay_image.value = encode(blend, self.image_format)

    def _draw_scores(self) -> None:
        """The scores line: the current map against the selected class's object."""
        s = self.state
        self._scores, text = views.scores(self.truth, self._map, self.session.index,
                                          s["class"], s["class_name"])
        self.score_line.value = render.caption(html.escape(text))

    def _draw_maps(self, probabilities: bool = True) -> None:
        s, d = self.state, self.display_size
        grid = tuple(self.session.activation(s["layer"]).shape[-2:])
        self.layer_label.value = render.layer_label(s["layer"], grid,
                                                    self._same_as.get(s["layer"]))
        title = cams.METHOD_TITLES[s["method"]]
        if self._map is None:
            self._heat_img = self._rgb_img  # the overlay shows the image alone
            panel = render.note_panel(self._unavailable, d)
            self.overlay_caption.value = render.unavailable_caption(title, s["layer"])
            self.raw_caption.value = render.caption("no raw map (see the message below)")
        else:
            with torch_threads(1):
                self._heat_img = render.heat_image(self._map, self.cmap, d)
            panel = render.raw_panel(self._raw, d)
            logit = float(self.session.logits[s["class"]])
            self.overlay_caption.value = render.map_caption(title, s["layer"], grid,
                                                            s["class_name"], logit)
            self.raw_caption.value = render.raw_caption(grid, float(self._raw.min()),
                                                        float(self._raw.max()))
        self._draw_overlay()
        self._panel_img = panel
        self.raw_image.value = encode(panel, "png")
        if self.truth is not None:
            self._draw_scores()
        if probabilities:
            self.probabilities.value = render.probability_table(
                self.session.probabilities, self.class_names, s["class"],
                self.probability_kind)

    def _draw_image(self) -> None:
        img = Image.fromarray(to_uint8(self.session.x))
        d = self.display_size
        self._rgb_img = img if img.size == (d, d) else img.resize((d, d), Image.BILINEAR)
        self.input_image.value = encode(self._rgb_img, self.image_format)
        self._outlines = views.outlines(self.truth, self.session.index, d)
        top = self.session.top_class()
        self.input_caption.value = render.input_caption(
            self.images.name(self.session.index), self.class_names[top],
            float(self.session.probabilities[top]))

    def _update(self, grads: bool = False, maps: bool = False, image: bool = False) -> None:
        if image:
            self._draw_image()
        if maps or grads:
            self._compute_map()
            self._draw_maps(probabilities=grads or image)

    # -- event handlers ----------------------------------------------------------------------
    def _timed(self, fn: Callable[[], None], t0: float | None = None) -> None:
        t0 = time.perf_counter() if t0 is None else t0  # given: the update began earlier
        try:
            fn()
        except Exception as err:  # show it in the widget, then let the kernel log it
            self.message.value = (f"<span style='color:#b00'>error: "
                                  f"{html.escape(str(err))}</span>")
            raise
        finally:
            self.last_update_ms = 1000.0 * (time.perf_counter() - t0)

    def _on_image(self, change) -> None:
        self._load_error, t0 = None, time.perf_counter()  # the forward counts in the update
        try:
            self.session.load(change["new"])
        except Exception as err:  # the image cannot be shown: stay on the previous one
            self._load_error = f"image {change['new']} cannot be shown: {err}"
            self._set_silently(self.image_slider, self._on_image, change["old"])
            self.message.value = (f"<span style='color:#b00'>error: "
                                  f"{html.escape(self._load_error)}</span>")
            return

        def run():
            if self.top_class.value:
                self._set_silently(self.class_dropdown, self._on_class,
                                  self.session.top_class())
            self._update(grads=True, maps=True, image=True)
        self._timed(run, t0)

    @staticmethod
    def _set_silently(widget, handler: Callable, value) -> None:
        """Set ``widget.value`` without running its ``handler`` (kept observed after)."""
        widget.unobserve(handler, "value")
        try:
            widget.value = value
        finally:
            widget.observe(handler, "value")

    def _on_class(self, change) -> None:
        top = self.session.top_class()
        if self.top_class.value and change["new"] != top:
            # a class chosen by hand: stop following the top
            self._set_silently(self.top_class, self._on_top_class, False)
        self._timed(lambda: self._update(grads=True))

    def _on_top_class(self, change) -> None:
        if change["new"]:
            self.class_dropdown.value = self.session.top_class()

    def _on_map_change(self, change) -> None:
        self._timed(lambda: self._update(maps=True))

    def _on_alpha(self, change) -> None:
        self._timed(self._draw_overlay)

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        entry = files[0]
        name = str(entry.get("name", "uploaded image"))
        try:
            index = self.add_image(bytes(entry["content"]), name=name)
        except ValueError as err:
            self.message.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
            return
        finally:
            self._set_silently(self.upload, self._on_upload, ())  # allow the same file again
        self.message.value = (f"{html.escape(name)} loaded as image {index} "
                              f"({self.image_size}x{self.image_size}, centre crop)")

    # -- display ---------------------------------------------------------------------------
    def snapshot(self) -> Image.Image:
        """The current view as one RGB image, as the widget shows it
        (:func:`gradcam_edu.views.snapshot`): the selection, the captioned image, overlay
        (outlines included) and raw map, the probabilities, the scores and the message."""
        s = self.state
        header = (f"image {s['image']} · class {s['class_name']} · "
                  f"{cams.METHOD_TITLES[s['method']]} · {views.plain(self.layer_label.value)}"
                  f" · opacity {s['alpha']:.2f}")
        panels = [(views.plain(caption.value), img) for caption, img in (
            (self.input_caption, self._rgb_img), (self.overlay_caption, self._overlay_img),
            (self.raw_caption, self._panel_img))]
        message = views.plain(self.message.value) or "a snapshot: run the cell to explore"
        return views.snapshot(
            header, panels, self.session.probabilities, self.class_names, s["class"],
            self.probability_kind, views.plain(self.score_line.value) if self.truth else None,
            message)

    def _repr_mimebundle_(self, **kwargs):
        """ipywidgets' bundle of the live view plus the :meth:`snapshot` as ``image/png`` and
        one ``text/plain`` line: JupyterLab with a kernel shows the widget, viewers without
        one (an untrusted notebook, nbconvert without the saved widget state) the PNG."""
        live = self.widget._repr_mimebundle_  # None once the widget is closed
        bundle = dict(live(**kwargs) or {}) if live is not None else {}
        png = io.BytesIO()
        self.snapshot().save(png, format="PNG", compress_level=6)  # ~optimize=True's size
        bundle["image/png"] = base64.b64encode(png.getvalue()).decode("ascii")
        bundle["text/plain"] = f"{self!r} (a snapshot; run the cell for the live explorer)"
        return bundle

    def __repr__(self) -> str:
        s = self.state
        return (f"Explorer(image={s['image']}, layer={s['layer']!r}, class={s['class_name']!r}, "
                f"method={s['method']!r}, alpha={s['alpha']}, {len(self.layers)} layers, "
                f"{len(self.images)} images)")
