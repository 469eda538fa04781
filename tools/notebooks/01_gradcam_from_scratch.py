# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: all
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 01 · Grad-CAM from scratch, on a plain CNN
#
# *Part 1 of the course "Which layer of a ResNet can Grad-CAM explain?" · about 75 minutes (reading, running the cells, the questions and the exercises).*
#
# Before we ask which layer of a ResNet Grad-CAM can explain, we build Grad-CAM by hand on a
# network **without** skip connections, where nothing surprising happens to the gradient.
#
# **After this notebook you can**
# 1. say why `layer.grad` does not exist, and capture a layer's activations and gradients with
#    hooks (bare hooks first, then the packaged `capture`);
# 2. compute Grad-CAM step by step in five lines of tensor code, and check it against
#    `gradcam_edu.cams`;
# 3. check that a map is *class-discriminative*, with a number instead of a glance;
# 4. read a layer-by-layer table of localisation scores **beside** the best score each
#    layer's grid allows, and beside trivial baselines.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from gradcam_edu import cams, metrics, recorded, viz, weights
from gradcam_edu.capture import capture
from gradcam_edu.exercises.measure import check_wrong_object_rate
from gradcam_edu.exercises.predict import gradient_weights_question, reveal
from gradcam_edu.scoreboard import scoreboard
from gradcam_edu.shapes import CLASS_NAMES, shapes_sample

torch.manual_seed(0)
torch.set_num_threads(1)   # tiny models; one thread gives the same numbers on every machine
plt.rcParams.update({"figure.dpi": 80, "axes.titlesize": 10})

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · The model and the images
#
# `gradcam_edu.shapes` draws images of 1 or 2 objects (circle, square, triangle, star, cross,
# ring) on cluttered backgrounds, and knows every object's exact mask. We can therefore
# *measure* whether a map points at the object. The shipped model `plaincnn-shapes` is a small
# VGG-style network (no skip connections) trained on such images; it answers "which shapes
# are present?" with one sigmoid per class (multi-label). Exact match below means every one
# of the six yes/no answers is right.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
model = weights.load_model("plaincnn-shapes")
card = weights.model_card("plaincnn-shapes")
held = card["held_out"]
print(f"plaincnn-shapes, trained on {card['training']['train_size']} images; "
      f"{held['n_images']} held-out '{held['split']}' images: "
      f"exact match {held['exact_match']:.3f}, mAP {held['mAP']:.3f}")
images, masks, classes = shapes_sample(48, split="test")   # test images 0..47, never trained on
with torch.no_grad():
    probs = torch.sigmoid(model(images))
labels = torch.zeros_like(probs)
for i, c in enumerate(classes):
    labels[i, c] = 1
exact = ((probs > 0.5) == labels.bool()).all(dim=1).float().mean()
print(f"on the 48 images of this notebook: exact match {exact:.3f}")

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 6, figsize=(11.5, 2.6), layout="constrained")
for ax, i in zip(axes, range(6), strict=True):
    ax.imshow(viz.to_numpy_image(images[i]))
    truth = ", ".join(CLASS_NAMES[c] for c in classes[i])
    said = ", ".join(CLASS_NAMES[c] for c in torch.nonzero(probs[i] > 0.5).flatten().tolist())
    ax.set_title(f"test {i}: {truth}\nmodel: {said or '(none)'}", fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
fig.suptitle("Test images: true classes (first line) and the model's answer (p > 0.5)")
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# The network's layers are named as in `model.named_modules()`. We will look at the output
# of every ReLU, in forward order. The last one is the last feature map (`LAYER`): a global
# average pool and one linear layer (`fc`) turn it into six class scores.

# %% slideshow={"slide_type": "fragment"}
# NBVAL_CHECK_OUTPUT
PLAIN_LAYERS = [n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]
LAYER = PLAIN_LAYERS[-1]
shapes_seen = {}
hooks = [model.get_submodule(n).register_forward_hook(
    lambda m, i, o, n=n: shapes_seen.__setitem__(n, tuple(o.shape))) for n in PLAIN_LAYERS]
try:
    with torch.no_grad():
        model(images[:1])
finally:
    for h in hooks:
        h.remove()
for name, shape in shapes_seen.items():
    print(f"{name:<24} output {shape}")
print("LAYER =", LAYER)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · The obvious code fails
#
# Grad-CAM needs two things from a layer: its output **A** (the activations) and the gradient
# **G** $= \partial y^c / \partial A$ of the class score $y^c$. A first attempt, which the source post also makes,
# is to run the backward pass and read the layer's `.grad`:

# %% tags=["raises-exception"] slideshow={"slide_type": "subslide"}
# NBVAL_RAISES_EXCEPTION
x = images[:1]
layer = model.get_submodule(LAYER)      # the module, e.g. model.features.block4.relu2
score = model(x)[0, classes[0][0]]
score.backward()
layer.grad    # an nn.Module has no .grad: AttributeError

# %% [markdown] slideshow={"slide_type": "fragment"}
# **A module is not a tensor.** It is the code that computed A; A itself existed only while
# the forward ran and was not kept. (A convolution's `conv.weight.grad` exists, but it is the
# gradient with respect to the layer's *parameters*, not its output.) To keep A we must be called *during*
# the forward: that is what a **forward hook** is for. To get G, we put a **tensor hook** on
# A, which autograd calls with $\partial y^c / \partial A$ during the backward.

# %% slideshow={"slide_type": "subslide"}
model.zero_grad(set_to_none=True)   # undo the parameter gradients the failed attempt wrote
store = {}

def keep_output(module, inputs, output):
    store["A"] = output                                             # the activations
    output.register_hook(lambda grad: store.__setitem__("G", grad))  # called in backward

handle = layer.register_forward_hook(keep_output)
try:
    score = model(x)[0, classes[0][0]]
    score.backward()
finally:
    handle.remove()    # a hook left behind runs on every later forward
model.zero_grad(set_to_none=True)
A_hook, G_hook = store["A"].detach(), store["G"]
print("A:", tuple(A_hook.shape), " G:", tuple(G_hook.shape))

# %% [markdown] slideshow={"slide_type": "subslide"}
# This works, but every use repeats the same bookkeeping: register, run, remove (also when
# something fails), avoid writing parameter gradients. As in fastbook's CAM chapter, we wrap it
# in a context manager. The course's version is `gradcam_edu.capture.capture`: it records any
# number of layers in one forward, differentiates with `torch.autograd.grad` (no parameter
# `.grad` is written) and removes its hooks on exit.

# %% slideshow={"slide_type": "fragment"}
# NBVAL_CHECK_OUTPUT
with capture(model, LAYER) as cap:
    cap.forward(x)
    cap.backward(target=classes[0][0])
    A, G = cap.activations[LAYER].detach(), cap.gradients[LAYER]
print("same A as the bare hook:", torch.equal(A, A_hook))
print("same G as the bare hook:", torch.allclose(G, G_hook, atol=1e-6))
print("hooks left on the model:", sum(len(m._forward_hooks) for m in model.modules()))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · The formula, step by step
#
# With $A$ and $G$ of shape (N, C, h, w), Grad-CAM (Selvaraju et al., 2017) for class $c$ is
#
# $$\alpha^c_k = \frac{1}{hw}\sum_{i,j} \frac{\partial y^c}{\partial A_k(i,j)}, \qquad
# L^c = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A_k\Big),$$
#
# then normalised and upsampled. Step by step:
#
# 1. **alpha** $\alpha_k$ = the mean of each channel's gradient over the $h \times w$
#    positions, shape (N, C);
# 2. the **weighted sum** of the channels, $\sum_k \alpha_k A_k$, shape (N, h, w), signed;
# 3. **ReLU**: keep only what speaks *for* the class;
# 4. **normalise** each map to [0, 1] (a small epsilon, so an all-zero map stays zero);
# 5. **upsample** to the image size (bilinear).

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
alpha = G.mean(dim=(2, 3))                                   # 1. (N, C)
weighted = (alpha[:, :, None, None] * A).sum(dim=1)         # 2. (N, h, w), signed
positive = weighted.clamp(min=0)                             # 3. ReLU
lo = positive.amin(dim=(1, 2), keepdim=True)
hi = (positive - lo).amax(dim=(1, 2), keepdim=True)
scaled = (positive - lo) / (hi + 1e-7)                       # 4. min-max per image
heat = F.interpolate(scaled[:, None], size=x.shape[-2:], mode="bilinear",
                     align_corners=False)[:, 0]              # 5. (N, 224, 224)

packaged = cams.finalize(cams.grad_cam(A, G), size=x.shape[-2:])
diff = (heat - packaged).abs().max().item()
print(f"alpha {tuple(alpha.shape)}, weighted sum {tuple(weighted.shape)}, map {tuple(heat.shape)}")
print("max |by hand - cams.finalize(cams.grad_cam(A, G))| < 1e-6:", diff < 1e-6)

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), layout="constrained")
axes[0].imshow(viz.to_numpy_image(x))
viz.show_raw_map(axes[1], weighted[0], colorbar={"shrink": 0.85, "label": r"$\sum_k \alpha_k A_k$"})
im2 = axes[2].imshow(scaled[0], cmap=viz.HEAT_CMAP, vmin=0, vmax=1)
axes[3].imshow(viz.overlay(x[0], heat[0]))
for ax in axes[2:]:
    fig.colorbar(im2, ax=ax, shrink=0.85, label="map value")
titles = [f"input: {CLASS_NAMES[classes[0][0]]}", "2. weighted sum (signed)",
          "3-4. ReLU, min-max", "5. upsampled, over the image"]
cell = f"{A.shape[-2]} x {A.shape[-1]} grid cell"
units = ["pixels", cell, cell, "pixels"]
for ax, title, unit in zip(axes, titles, units, strict=True):
    ax.set(title=title, xlabel=f"x ({unit})", ylabel=f"y ({unit})")
fig.suptitle(f"Grad-CAM at {LAYER}, step by step")
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Key sentence.** A Grad-CAM map is one weighted sum of a layer's channels: each channel
# weighted by how much, on average over positions, the class score rises when that channel
# rises. It shows *where the layer's features are that raise the score*, at that layer's
# resolution, and nothing finer.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · Is the map about the class?
#
# A map that lights up "the object" for any class we ask about explains nothing about the
# class. On an image with two objects, the map for class A should sit on object A, and the
# map for class B on object B. We take the first test image with two objects that the model
# gets exactly right, and measure, for each map, the **energy share** on each object
# (`metrics.energy_pointing_game`: the share of the map's mass inside the mask).

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    two = [i for i in range(len(classes)) if len(classes[i]) == 2]
    right = [i for i in two if bool(((probs[i] > 0.5) == labels[i].bool()).all())]
    pick = (right or two)[0]
    ca, cb = classes[pick]
    x2 = images[pick:pick + 1]
    with capture(model, LAYER) as cap:
        cap.forward(x2)
        maps2 = {}
        for c in (ca, cb):
            cap.backward(target=c)
            maps2[c] = cams.finalize(cams.grad_cam(cap.activations[LAYER].detach(),
                                                   cap.gradients[LAYER]), size=(224, 224))
    mask_a, mask_b = masks[pick][0:1], masks[pick][1:2]
    print(f"test image {pick}: {CLASS_NAMES[ca]} and {CLASS_NAMES[cb]}")
    print(f"{'map for':<12}{'on ' + CLASS_NAMES[ca]:>14}{'on ' + CLASS_NAMES[cb]:>14}"
          f"{'target share':>14}")
    shares = {}
    for c, own, other in ((ca, mask_a, mask_b), (cb, mask_b, mask_a)):
        on_a = metrics.energy_pointing_game(maps2[c], mask_a).item()
        on_b = metrics.energy_pointing_game(maps2[c], mask_b).item()
        shares[c] = metrics.target_share(maps2[c], own, other).item()
        print(f"{CLASS_NAMES[c]:<12}{on_a:>14.2f}{on_b:>14.2f}{shares[c]:>14.2f}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("01 class discrimination", table.text, tol=0.01)   # the same on every CPU

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.5), layout="constrained")
axes[0].imshow(viz.to_numpy_image(x2))
axes[0].contour(mask_a[0].numpy(), levels=[0.5], colors="white", linewidths=1)
axes[0].contour(mask_b[0].numpy(), levels=[0.5], colors="black", linewidths=1)
axes[0].set_title(f"white: {CLASS_NAMES[ca]}, black: {CLASS_NAMES[cb]}")
for ax, c in zip(axes[1:], (ca, cb), strict=True):
    ax.imshow(viz.overlay(x2[0], maps2[c][0]))
    ax.set_title(f"Grad-CAM for '{CLASS_NAMES[c]}' (target share {shares[c]:.2f})")
for ax in axes:
    ax.set_xlabel("x (pixels)"), ax.set_ylabel("y (pixels)")
fig.colorbar(plt.cm.ScalarMappable(cmap=viz.HEAT_CMAP), ax=axes.tolist(), shrink=0.8, label="map value")
fig.suptitle(f"One image, two classes: {LAYER}")
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# The table above gives, for each class, the share of the map's mass on each object and the
# **target share** (mass on the asked-for object divided by mass on both objects: 1 = all on
# the right one, 0.5 = no preference). Here the map for "square" puts 0.22 of its mass on the
# square and 0.00 on the cross; the map for "cross" 0.15 on the cross and 0.00 on the square:
# target share 1.00 both ways. Most of the mass lies *around* the objects: a 14 x 14 map
# cannot follow a shape's edges (section 5 measures that limit). Read the numbers, not only
# the colours. The maps are drawn with `inferno` (`viz.HEAT_CMAP`), a perceptually uniform
# colour map: its brightness rises steadily with the value, so equal steps of the map look
# like equal steps. The `jet` map that most Grad-CAM code uses (the post too) has bright
# yellow and cyan bands that draw edges the data does not have, and makes any bump look
# important.
#
# **Predict, then check** (before you scroll on: later cells print the answer). Grad-CAM weights each channel by its mean gradient. Is that
# weighting what puts the map on the object? Set `my_prediction` to one of the options the
# cell prints, then run it again: only then does it measure, on the 48 images.

# %% slideshow={"slide_type": "fragment"}
my_prediction = None      # your prediction: "higher", "about the same" or "lower"
reveal(my_prediction, gradient_weights_question(model, images, masks, classes, LAYER))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · Layer by layer through the plain CNN
#
# Nothing forces us to use the last layer. Below, the same image and both classes, at the
# last ReLU of each of the four blocks (the table after it measures every ReLU). The grid of each layer (printed in section 1) sets how fine its map
# can be.

# %% slideshow={"slide_type": "subslide"}
grid_maps = {}
block_ends = list({n.rsplit(".", 1)[0]: n for n in PLAIN_LAYERS}.values())   # one per block
with capture(model, block_ends) as cap:
    cap.forward(x2)
    for c in (ca, cb):
        cap.backward(target=c)
        for name in block_ends:
            A_l = cap.activations[name].detach()
            column = f"{name.removeprefix('features.')}\n{A_l.shape[-1]}x{A_l.shape[-1]}"
            grid_maps.setdefault(f"class: {CLASS_NAMES[c]}", {})[column] = cams.finalize(
                cams.grad_cam(A_l, cap.gradients[name]), size=(224, 224))[0]
fig = viz.plot_grid(x2[0], grid_maps, cell_size=2.6)
fig.suptitle(f"Grad-CAM on test image {pick}, per block (columns) and class (rows), plain CNN",
             y=1.06)
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Measured over 48 images
#
# One image proves nothing. `gradcam_edu.scoreboard.scoreboard` scores every (image, class
# present) pair at every layer from one capture per batch:
# **pointing** (is the map's maximum on the object? strict, and within 15 px as in Zhang et
# al.), **energy** (share of the mass on the object) and, on 2-object images, **target
# share**. Each layer's **ceiling** is the best energy *any* map on that layer's grid can
# reach after the same upsampling. Energy is a ratio, so the best map puts all its mass on
# the single best cell: with $U$ the upsampling, $E(Um) = \langle m, U^\top \text{mask}\rangle
# / \langle m, U^\top 1\rangle$ is a weighted mean of the per-cell ratios, so its maximum is
# $\max_k (U^\top \text{mask})_k / (U^\top 1)_k$ (a derivation, `metrics.energy_ceiling`,
# checked against every one-cell map in the tests). Beside it, **ref** is the energy of the
# mask itself pooled to the grid: a map that copies the object at the grid's resolution, a
# *reference*, not a bound. The **baselines** are maps that know nothing: a bump at the
# centre, and a uniform map.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    board = scoreboard(model, images, masks, classes, PLAIN_LAYERS, methods=("gradcam",))
    print(f"{'layer':<14}{'grid':>8}{'point':>7}{'@15px':>7}{'energy [95% CI]':>20}"
          f"{'ceiling':>9}{'ref':>6}{'target share':>14}")
    for r in board.rows:
        name = r["layer"].removeprefix("features.") if r["method"] == "gradcam" else r["method"]
        ceiling = f"{r['ceiling_energy']:.2f}" if "ceiling_energy" in r else "-"
        ref = f"{r['ceiling_reference_energy']:.2f}" if "ceiling_energy" in r else "-"
        print(f"{name:<14}{r['grid']:>8}{r['pointing']:>7.2f}{r['pointing_tol']:>7.2f}"
              f"{r['energy']:>8.2f} [{r['energy_lo']:.2f}, {r['energy_hi']:.2f}]"
              f"{ceiling:>9}{ref:>6}{r['target_share']:>14.2f}")
    n_pairs, n_two = len(board.image_index), int((~board.scores[(LAYER, 'gradcam')]['target_share']
                                                 .isnan()).sum())
    print(f"{n_pairs} (image, class) pairs from {len(images)} images; target share on the "
          f"{n_two} pairs of 2-object images")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("01 plain CNN scoreboard", table.text, tol=0.02)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "subslide"}
# How to read it: compare each layer's **energy** with its **ceiling** (same row) and with the
# **uniform** baseline (the objects' mean area fraction); compare **pointing** with the
# **centre** baseline. The ceiling falls with the grid, from 1.00 at 112 x 112 to 0.89 at
# 14 x 14 (the mask-pooled reference, from 0.95 to 0.64): a coarse layer's low score is
# partly the grid, but every layer here stays far below what its grid allows.
#
# What it says (numbers as printed above): the energy share is low in blocks 1 and 2 (0.14 to
# 0.11), highest at `block3.relu2` (0.39, ceiling 0.99), then 0.27 and 0.22 in block 4
# (ceiling 0.89), all above the uniform map's 0.04. The target
# share stays near 0.5 in blocks 1 and 2 (0.49, 0.48, 0.47: no preference for the class
# asked) and reaches 0.97 and 0.99 in block 4. **Early layers give maps that are not about
# the class, in a network without a single skip connection.** Keep that in mind in notebook
# 02, before blaming a ResNet's skips for its early layers' maps.

# %% slideshow={"slide_type": "subslide"}
sample_mask = masks[pick][0:1]
fig, axes = plt.subplots(1, 5, figsize=(15, 3.5), layout="constrained")
axes[0].imshow(sample_mask[0].float(), cmap="gray")
axes[0].set_title("true mask (224 x 224)")
for ax, g in zip(axes[1:], (56, 28, 14, 7), strict=True):
    ref_map = metrics.mask_pooled_maps(sample_mask, g)[0]
    energy = metrics.energy_pointing_game(ref_map[None], sample_mask).item()
    best = metrics.energy_ceiling(sample_mask, g).item()
    ax.imshow(ref_map, cmap=viz.HEAT_CMAP, vmin=0, vmax=1)
    ax.set_title(f"{g}x{g}: pooled mask {energy:.2f}\nbest one-cell map {best:.2f}",
                 fontsize=9)
for ax in axes:
    ax.set_xlabel("x (pixels)"), ax.set_ylabel("y (pixels)")
fig.colorbar(plt.cm.ScalarMappable(cmap=viz.HEAT_CMAP), ax=axes.tolist(), shrink=0.8, label="map value")
fig.suptitle(f"The '{CLASS_NAMES[ca]}' mask pooled to a grid and upsampled like a CAM (the "
             "reference), and the energy of the best one-cell map (the ceiling)")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · Your turn: the explorer
#
# The figure below is a static preview (one more two-object image, three layers, three
# methods); the cell after it opens the live explorer, which needs a running kernel. Move
# the **layer** slider from the first block to the last, switch the **class** between the
# two objects, and try another **method**.

# %% slideshow={"slide_type": "subslide"}
other = next(i for i in range(len(classes)) if i != pick and len(classes[i]) == 2)
three = [PLAIN_LAYERS[0], PLAIN_LAYERS[len(PLAIN_LAYERS) // 2], LAYER]
maps = cams.explain(model, images[other:other + 1], three, target=classes[other][0],
                    methods=("gradcam", "hirescam", "layercam"))
grid = {f"{n.removeprefix('features.')}": {cams.METHOD_TITLES[m]: v[0] for m, v in row.items()}
        for n, row in maps.items()}
fig = viz.plot_grid(images[other], grid, cell_size=2.0)
fig.suptitle(f"What the explorer shows: test image {other}, class "
             f"'{CLASS_NAMES[classes[other][0]]}', three layers x three methods", y=1.03)
plt.show()

# %% slideshow={"slide_type": "subslide"}
from gradcam_edu.explorer import Explorer

ex = Explorer(model, images[:12], class_names=CLASS_NAMES, layers=PLAIN_LAYERS, layer=LAYER)
ex

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * An `nn.Module` has no `.grad`: a layer's output and its gradient exist only during the
#   passes. A forward hook keeps the output; a tensor hook on it receives $\partial y^c/\partial A$.
#   Remove hooks in `finally` (or use `capture`, which does).
# * Grad-CAM $= \mathrm{ReLU}(\sum_k \bar G_k A_k)$, normalised and upsampled. Five lines of tensor code,
#   equal to `cams.finalize(cams.grad_cam(A, G))`.
# * Class discrimination is measurable: the target share on two-object images.
# * Every layer's score must be read against its **ceiling** (the best any map on its grid
#   can reach) and against
#   **trivial baselines**; the tables above print all three.
#
# Next, notebook 02 does the same on a ResNet, where skip connections and an in-place ReLU
# change what a hook sees.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each checker comes from `gradcam_edu.exercises` and says what is wrong when an answer is
# not right. Solutions are in the collapsed cells (click the three dots to open one): try
# first, they are not executed in the committed notebook.
#
# The first exercises practise what the notebook showed, as warm-ups; the last one asks for a
# **new measurement**, a number no cell above prints.
#
# **Exercise 1 · The channel weights.** From the `G` captured above, compute Grad-CAM's
# channel weights `alpha_1` (one per image and channel).

# %% tags=["exercise"] slideshow={"slide_type": "subslide"}
from gradcam_edu.exercises.nb01 import check_bare_hooks, check_channel_weights, check_grad_cam

alpha_1 = G.sum(dim=(2, 3))       # replace with your answer
check_channel_weights(alpha_1, G)

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
alpha_1 = G.mean(dim=(2, 3))
check_channel_weights(alpha_1, G)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2 · Grad-CAM as a function.** Write `my_grad_cam(A, G, size)` returning the
# displayed maps (N, H, W): weighted sum, ReLU, min-max per image (no NaN when a map is all
# zero), bilinear upsampling with `align_corners=False`.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
def my_grad_cam(A, G, size):
    weighted = (G.mean(dim=(2, 3))[:, :, None, None] * A).sum(dim=1)
    return weighted / weighted.max()          # replace with your answer

check_grad_cam(my_grad_cam)

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
def my_grad_cam(A, G, size):
    weighted = (G.mean(dim=(2, 3))[:, :, None, None] * A).sum(dim=1).clamp(min=0)
    lo = weighted.amin(dim=(1, 2), keepdim=True)
    hi = (weighted - lo).amax(dim=(1, 2), keepdim=True)
    scaled = (weighted - lo) / (hi + 1e-7)
    return F.interpolate(scaled[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]

check_grad_cam(my_grad_cam)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3 · Safe bare hooks.** Write `record(model, layer_name, x, target)` that returns
# `(A, G)` for the layer named `layer_name`, with a forward hook and a tensor hook, and leaves
# no hook on the model, *even when the backward fails* (the checker also calls it with an
# impossible class). Hint: `dict(model.named_modules())[layer_name]`.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
def record(model, layer_name, x, target):
    store = {}
    module = dict(model.named_modules())[layer_name]

    def hook(m, inputs, output):
        store["A"] = output
        output.register_hook(lambda g: store.__setitem__("G", g))

    handle = module.register_forward_hook(hook)
    model(x)[:, target].sum().backward()       # replace: what if this line raises?
    handle.remove()
    return store["A"].detach(), store["G"]

check_bare_hooks(record, model, images[:2], target=classes[0][0], layer=LAYER)

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
def record(model, layer_name, x, target):
    store = {}
    module = dict(model.named_modules())[layer_name]

    def hook(m, inputs, output):
        store["A"] = output
        output.register_hook(lambda g: store.__setitem__("G", g))

    handle = module.register_forward_hook(hook)
    try:
        model(x)[:, target].sum().backward()
    finally:
        handle.remove()                 # runs also when the line above raises
    model.zero_grad(set_to_none=True)   # the backward also wrote parameter gradients
    return store["A"].detach(), store["G"]

check_bare_hooks(record, model, images[:2], target=classes[0][0], layer=LAYER)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 · A new measurement: the wrong object.** No cell above prints this. Over the
# two-object images among the 48, how often does the Grad-CAM map at `PLAIN_LAYERS[2]`
# (block 2) for the image's **first** class have its maximum on the **other** object? Give
# the share (0 to 1). Hint: `cams.explain(model, x, [layer], targets)` takes one target
# class per image as a list, `metrics.pointing_game(maps, other_masks)` says "is the maximum
# on this mask?"; `masks[i][1]` is the second object's mask. Then predict the share at
# `LAYER` before you measure it there too.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
two = [i for i in range(len(classes)) if len(classes[i]) == 2]
wrong_share = 0.5         # replace with your measurement
check_wrong_object_rate(wrong_share, model, images, masks, classes, PLAIN_LAYERS[2])

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
two = [i for i in range(len(classes)) if len(classes[i]) == 2]
block2 = cams.explain(model, images[two], [PLAIN_LAYERS[2]], [classes[i][0] for i in two])
other_masks = torch.stack([masks[i][1] for i in two])
wrong_share = metrics.pointing_game(block2[PLAIN_LAYERS[2]]["gradcam"], other_masks).float().mean()
check_wrong_object_rate(wrong_share, model, images, masks, classes, PLAIN_LAYERS[2])
