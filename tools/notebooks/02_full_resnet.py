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
# # 02 · The full ResNet
#
# *Part 2 of the course "Which layer of a ResNet can Grad-CAM explain?" · about 85 minutes (reading, running the cells, the questions and the exercises).*
#
# Notebook 01 built Grad-CAM on a plain CNN. A ResNet adds two things: **skip connections**
# (`out + identity`) and a **shared, in-place ReLU** inside each block. Folklore says the skips
# "scatter" the gradient and make maps inside a block noisy, and that the first convolution
# gives clearer maps. Here we look at what the code does, and measure.
#
# **After this notebook you can**
# 1. name every tensor of a torchvision `BasicBlock`, and capture the right one (`relu#0` vs
#    `relu#1`; why a bare hook on `bn1` sees no negative value);
# 2. run the source post's first two examples *correctly* (`layer4.1.conv2`, `conv1`) beside
#    the block outputs;
# 3. explain, with a measurement, where the gradient through a skip goes, and why Grad-CAM,
#    HiResCAM and CAM coincide at `layer4` and nowhere else;
# 4. read a per-layer scoreboard with ceilings, baselines and a paired bootstrap interval.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch

from gradcam_edu import cams, gradflow, recorded, viz, weights
from gradcam_edu.capture import capture
from gradcam_edu.diagram import basic_block_diagram
from gradcam_edu.exercises.measure import check_target_shares
from gradcam_edu.exercises.predict import conv2_question, reveal
from gradcam_edu.scoreboard import scoreboard
from gradcam_edu.shapes import CLASS_NAMES, shapes_sample

torch.manual_seed(0)
torch.set_num_threads(1)   # tiny model; one thread gives the same numbers on every machine
plt.rcParams.update({"figure.dpi": 80, "axes.titlesize": 10})

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · The model: a ResNet-18 with torchvision's names
#
# `resnet18-shapes` *is* a `torchvision.models.ResNet` built from `BasicBlock`s, only
# narrower (16 to 128 channels instead of 64 to 512), trained on the same shapes images as
# notebook 01. Every module name (`conv1`, `layer4.1.conv2`, `fc`) is torchvision's, so
# everything below applies to `torchvision.models.resnet18` as is.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
model = weights.load_model("resnet18-shapes")
held = weights.model_card("resnet18-shapes")["held_out"]
print(f"resnet18-shapes, {held['n_images']} held-out '{held['split']}' images: "
      f"exact match {held['exact_match']:.3f}, mAP {held['mAP']:.3f}")
images, masks, classes = shapes_sample(100, split="test")   # test images 0..99
with torch.no_grad():
    probs = torch.sigmoid(model(images))
labels = torch.zeros_like(probs)
for i, c in enumerate(classes):
    labels[i, c] = 1
exact = ((probs > 0.5) == labels.bool()).all(dim=1).float().mean()
print(f"on the 100 test images of this notebook: exact match {exact:.3f}")
print(model.layer4[1])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · Anatomy of a BasicBlock
#
# torchvision's `BasicBlock.forward`, in words:
#
# ```
# identity = x                        # or downsample(x) when the shape changes
# out = relu(bn1(conv1(x)))           # relu, call #0
# out = bn2(conv2(out))               # the residual branch ends here
# out += identity                     # in place, on bn2's output tensor
# out = relu(out)                     # relu, call #1: the SAME module, in place
# ```
#
# Two consequences for hooks: a hook on `relu` fires **twice** per forward, and the tensors
# that `bn1` and `bn2` return are **overwritten** later in the same forward. The drawing below
# names every point `capture` can hook (`pre_relu`, the sum before the last ReLU, exists on
# the models of `variants.with_sum_points`) and the two ways the gradient goes back.

# %% slideshow={"slide_type": "subslide"}
fig, ax = plt.subplots(figsize=(11, 4.5))
basic_block_diagram("layer4.1", ax=ax)
plt.show()

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
x = images[:4]
calls = []
handle = model.layer4[1].relu.register_forward_hook(lambda m, i, o: calls.append(tuple(o.shape)))
try:
    with torch.no_grad():
        model(x)
finally:
    handle.remove()
print(f"layer4.1.relu ran {len(calls)} times in one forward: {calls}")
try:
    with capture(model, "layer4.1.relu") as cap:
        cap.forward(x)
except ValueError as err:
    print("capture refuses the bare name:", err)

# %% [markdown] slideshow={"slide_type": "subslide"}
# `capture` names each call: `layer4.1.relu#0` (inside the branch) and `layer4.1.relu#1`
# (after the addition). The second call's output *is* the block's output:

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    names = ["layer4.1.bn1", "layer4.1.relu#0", "layer4.1.bn2", "layer4.1.relu#1", "layer4.1"]
    with capture(model, names) as cap:
        cap.forward(x)
        act = {n: cap.activations[n].detach() for n in names}
    print("relu#1 output == block output layer4.1:", torch.equal(act["layer4.1.relu#1"],
                                                                 act["layer4.1"]))
    for n in names:
        print(f"{n:<17} share of negative values {float((act[n] < 0).float().mean()):.3f}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("02 negative shares", table.text, tol=0.002)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What a bare hook sees
#
# A bare forward hook that keeps `bn1`'s output without copying it keeps a *reference* to a
# tensor that the in-place ReLU overwrites a moment later. The same happens to `bn2`'s output,
# first by `out += identity`, then by the ReLU.

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    kept = {}
    block = model.layer4[1]
    handles = [block.bn1.register_forward_hook(lambda m, i, o: kept.__setitem__("bn1", o)),
               block.bn2.register_forward_hook(lambda m, i, o: kept.__setitem__("bn2", o))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    print(f"bare hook on bn1: share of negative values {float((kept['bn1'] < 0).float().mean()):.3f}"
          f" (capture: {float((act['layer4.1.bn1'] < 0).float().mean()):.3f})")
    print("bare hook on bn2 holds the block's output instead:",
          torch.equal(kept["bn2"], act["layer4.1"]))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("02 bare hook on bn1", table.text, tol=0.002)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Key sentence.** In a torchvision ResNet, a hook that stores a module's output without
# copying it can store a *later* value. `capture` keeps the module's own output and hands a
# clone to the rest of the network, so the activation and its gradient belong to the same
# value. (A tensor hook on the overwritten tensor would still return the gradient for the
# *old* value: activations and gradients from different tensors, a mismatch some libraries
# make. `register_full_backward_hook` on these modules raises an error instead.)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · The source post's examples, done correctly
#
# The post computes Grad-CAM at `layer4.1.conv2` (its example 1) and at `conv1` (example 2),
# with a random `fc`, `.grad` on a module and no ReLU-safe normalisation. Here: the trained
# head, `capture`, the packaged formula, on a two-object image, beside the block outputs.

# %% slideshow={"slide_type": "subslide"}
LAYERS = ["conv1", "layer1", "layer2", "layer3", "layer4.0", "layer4.1.conv2", "layer4"]
two = [i for i in range(len(classes)) if len(classes[i]) == 2]
right = [i for i in two if bool(((probs[i] > 0.5) == labels[i].bool()).all())]
pick = (right or two)[0]
ca, cb = classes[pick]
x1 = images[pick:pick + 1]
rows = {}
with capture(model, LAYERS) as cap:
    cap.forward(x1)
    for c in (ca, cb):
        cap.backward(target=c)
        for name in LAYERS:
            A = cap.activations[name].detach()
            column = f"{name}\n{A.shape[-1]}x{A.shape[-1]}"
            rows.setdefault(f"class: {CLASS_NAMES[c]}", {})[column] = cams.finalize(
                cams.grad_cam(A, cap.gradients[name]), size=(224, 224))[0]
for part, names in (("early layers", LAYERS[:4]), ("the last stage", LAYERS[4:])):
    shown = {row: {col: m for col, m in cols.items() if col.split("\n")[0] in names}
             for row, cols in rows.items()}
    fig = viz.plot_grid(x1[0], shown, cell_size=2.4)
    fig.suptitle(f"Grad-CAM on test image {pick}, {part}: per layer (columns) and class "
                 "(rows)", y=1.06)
    plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# Look before measuring: `conv1` to `layer2` light up edges and clutter, with little regard
# for the class asked (at `layer1` the map for "square" is brightest on the **cross**); from
# `layer3` on, it sits on the object of the class asked. `layer4.1.conv2` is the widest
# blob. One image proves nothing: section 6 puts numbers on this over 100 images.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · Where does the gradient go?
#
# The post says gradients inside a block are "diluted" because they also flow through the
# skip. Follow the gradient backwards through `layer4.1`: $\partial y^c / \partial\,\mathrm{out}$ passes
# the final ReLU, then reaches `out += identity`, where it is **copied** to both summands.
# One copy goes into the branch (`bn2`, `conv2`, ...); the other goes through the skip to the
# block's **input**. Nothing from the skip enters `conv2`'s output: from there, there is
# exactly one path to the logit.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
target = [c[0] for c in classes[:32]]
with capture(model, ["layer4.1.bn2", "layer4.1"]) as cap:
    cap.forward(images[:32])
    cap.backward(target)
    g_bn2 = cap.gradients["layer4.1.bn2"]
    through_relu = cap.gradients["layer4.1"] * (cap.activations["layer4.1"] > 0)
d = (g_bn2 - through_relu).abs().max().item()
print("d score / d bn2 == d score / d block output, masked by the final ReLU:", d < 1e-6)

# %% [markdown] slideshow={"slide_type": "subslide"}
# Where the skip *does* matter is at each block's input, where its gradient and the branch's
# add up. `gradflow.gradient_flow` splits the gradient at every block's input into the two
# parts (one forward, one backward, plus a vector-Jacobian product per block) and checks that
# they add up to the captured gradient. `skip share` = |g_skip| / (|g_skip| + |g_branch|),
# averaged over 32 test images (target: each image's first class).

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    flows = gradflow.gradient_flow(model, images[:32], target)
    print(f"{'block':<10}{'skip':<12}{'skip share':>11}{'|g_skip|':>11}{'|g_branch|':>11}"
          f"{'cosine':>8}")
    for f in gradflow.flow_table(flows):
        print(f"{f['block']:<10}{f['skip']:<12}{f['skip_share']:>11.2f}{f['skip_norm']:>11.4f}"
              f"{f['branch_norm']:>11.4f}{f['cosine']:>8.2f}")
    err = max(f.reconstruction_error for f in flows)
    print("skip + branch == captured input gradient (max error < 1e-5):", err < 1e-5)

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("02 gradient flow", table.text, tol=0.01)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The columns.** `|g_skip|` and `|g_branch|` are the sizes (L2 norms, mean over images) of
# the two parts of the gradient at the block's input; `cosine` is the cosine similarity of
# the two parts as vectors, $\cos = \langle g_{skip}, g_{branch} \rangle / (|g_{skip}|\,|g_{branch}|)$,
# per image then averaged: near 1 the two paths push the input the same way, near 0 they
# are unrelated, below 0 they partly cancel.
#
# **What it means for claim (a).** The skip carries a large part of the gradient (the table
# prints skip shares from 0.27 to 0.49) *past* each block to the layers before it; it does not
# touch the gradient at `conv2`'s output, so it cannot be what makes a `layer4.1.conv2` map
# noisy. What is true: `conv2` holds only the block's *increment* (the
# residual), so its map explains that increment, not the evidence already carried by the
# identity. And the earlier a layer, the more paths its gradient sums: each block doubles
# them, 2^8 = 256 for `conv1` (exercise 2).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · Two exact facts: `layer4`, and the grid at `conv1`
#
# ### At `layer4`, Grad-CAM = HiResCAM = CAM
#
# After `layer4` come a global average pool over 7 x 7 = 49 cells and one linear layer. So
# $\partial y^c / \partial A_k(i, j) = W_{ck} / 49$ at **every** position: the gradient is
# constant over space, and Grad-CAM's averaging changes nothing:
#
# $$\text{Grad-CAM} = \sum_k \frac{W_{ck}}{49} A_k = \frac{\text{CAM}}{49} = \sum_k G_k \odot A_k
# = \text{HiResCAM}.$$

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    x16, t16 = images[:16], [c[0] for c in classes[:16]]
    with capture(model, ["layer3", "layer4"]) as cap:
        cap.forward(x16)
        cap.backward(t16)
        A4, G4 = cap.activations["layer4"].detach(), cap.gradients["layer4"]
        A3, G3 = cap.activations["layer3"].detach(), cap.gradients["layer3"]
    gc, hr = cams.grad_cam(A4, G4), cams.hires_cam(A4, G4)
    cam = cams.class_activation_map(A4, model.fc.weight.detach(), t16)
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()   # noqa: E731
    print(f"layer4 raw maps, max |Grad-CAM - HiResCAM| / max |HiResCAM| < 1e-5: {rel(gc, hr) < 1e-5}")
    print(f"layer4 raw maps, max |49 Grad-CAM - CAM| / max |CAM|       < 1e-5: "
          f"{rel(49 * gc, cam) < 1e-5}")
    shown = lambda f, A, G: cams.finalize(f(A, G), size=(224, 224))   # noqa: E731
    d4 = (shown(cams.grad_cam, A4, G4) - shown(cams.hires_cam, A4, G4)).abs().max().item()
    d3 = (shown(cams.grad_cam, A3, G3) - shown(cams.hires_cam, A3, G3)).abs().max().item()
    print(f"displayed maps, max |Grad-CAM - HiResCAM|: layer4 < 1e-5: {d4 < 1e-5}; "
          f"layer3: {d3:.2f}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("02 identity at layer4", table.text, tol=0.01)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "fragment"}
# At `layer3` (the cell above prints the largest difference of the displayed maps) the
# gradient varies over positions and the methods differ. **CAM's guarantee holds at one
# layer only**: the one that feeds the pooling and the linear head.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### At `conv1`, most gradients are exactly zero
#
# The stem is conv1 (112 x 112), bn1, relu, then a 3 x 3 max-pool with stride 2 (56 x 56).
# In each channel, a max-pool output passes its gradient to the one input that won, so at
# most 56 x 56 of a channel's 112 x 112 entries (1 in 4) receive any gradient. Below: the
# share of gradient entries that are exactly zero, per layer of the stem.

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    rows = gradflow.zero_gradient_share(model, x16, t16,
                                        ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1"])
    print(f"{'layer':<16}{'grid':>9}{'zero gradient entries':>23}")
    for r in rows:
        print(f"{r['layer']:<16}{'x'.join(map(str, r['grid'])):>9}{r['zero_entries']:>23.3f}")
    print("conv1: at least 3 in 4 entries are zero:", rows[0]["zero_entries"] >= 0.75)

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("02 zero gradients", table.text, tol=0.005)   # the same on every CPU

# %% slideshow={"slide_type": "subslide"}
with capture(model, "conv1") as cap:
    cap.forward(x1)
    cap.backward(target=ca)
    A1, G1 = cap.activations["conv1"].detach(), cap.gradients["conv1"]
k = int(G1.abs().sum(dim=(0, 2, 3)).argmax())   # the channel with the most gradient
ys, xs = torch.nonzero(masks[pick][0]).float().mean(0).div(2).round().int().tolist()
r0, c0 = min(max(ys - 16, 0), 80), min(max(xs - 16, 0), 80)   # 32 x 32 window on the object
panels = [(f"|d score / d conv1|, channel {k}", G1[0, k].abs(), "magma", 0),
          ("HiResCAM at conv1 (raw)", cams.hires_cam(A1, G1)[0], "RdBu_r", None),
          ("Grad-CAM at conv1 (raw)", cams.grad_cam(A1, G1)[0], "RdBu_r", None)]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5), layout="constrained")
window = (c0 - 0.5, c0 + 31.5, r0 + 31.5, r0 - 0.5)
for ax, (title, m, cmap, vmin) in zip(axes, panels, strict=True):
    m = m[r0:r0 + 32, c0:c0 + 32]
    if cmap == "RdBu_r":                       # a signed raw map: the package's one renderer
        viz.show_raw_map(ax, m, extent=window, colorbar={"shrink": 0.85, "label": "value"})
    else:
        im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=m.abs().max().item(), extent=window)
        fig.colorbar(im, ax=ax, shrink=0.85, label="value")
    ax.set(title=title, xlabel="conv1 column", ylabel="conv1 row")
fig.suptitle(f"The grid effect: a 32 x 32 window of conv1's 112 x 112 grid around the "
             f"'{CLASS_NAMES[ca]}' of test image {pick}")
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# A channel's gradient (left) is a sparse grid of dots; different channels pick different
# winners, so elementwise methods that sum over channels (HiResCAM, LayerCAM) come out as
# speckle. Grad-CAM (right) averages the gradient per channel first, so its map
# is dense: it is then ReLU of **one fixed linear combination of conv1's 7 x 7 filters**
# applied to the image: an edge detector with class-dependent weights. Here it traces the
# square's outline; in the figure of section 3 it traces the clutter and the cross just as
# well. Fine-grained, but the detail comes from the image's edges, not from class evidence
# (and fine-grained is not concentrated: notebook 05's Gini puts `conv1`'s maps below the
# block outputs of the deeper stages).

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Predict, then check** (before you scroll on: later cells print the answer). The post's example 1 hooks `layer4.1.conv2`, inside the last
# block. With the trained head, will its map put more, as much, or less of its mass on the
# object than the block's output? Commit to an answer (set `my_prediction`), then run the
# cell: it measures on the shipped evidence (3 trained models, 128 held-out images).

# %% slideshow={"slide_type": "fragment"}
my_prediction = None      # your prediction: "higher", "about the same" or "lower"
reveal(my_prediction, conv2_question())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · The scoreboard: every layer, three methods, 100 images
#
# Same measures as in notebook 01, on the 100 test images (each object a pair): strict
# pointing and pointing within 15 px, each beside the best any map on the layer's grid can
# reach (`pointing_ceiling`), the energy share with its 95% bootstrap interval over images
# and its ceiling, and the target share on two-object images.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    board = scoreboard(model, images, masks, classes, LAYERS,
                       methods=("gradcam", "hirescam", "layercam"))


    def show(methods):
        print(f"{'layer':<15}{'method':<10}{'grid':>8}{'strict':>7}{'ceil':>5}{'@15px':>7}"
              f"{'ceil':>5}{'energy [95% CI]':>20}{'ceiling':>8}{'target':>8}")
        for r in board.rows:
            if r["method"] in methods:
                ceil = {k: f"{r['ceiling_' + k]:.2f}" if "ceiling_" + k in r else "-"
                        for k in ("pointing", "pointing_tol", "energy")}
                print(f"{r['layer']:<15}{r['method']:<10}{r['grid']:>8}{r['pointing']:>7.2f}"
                      f"{ceil['pointing']:>5}{r['pointing_tol']:>7.2f}{ceil['pointing_tol']:>5}"
                      f"{r['energy']:>8.2f} [{r['energy_lo']:.2f}, {r['energy_hi']:.2f}]"
                      f"{ceil['energy']:>8}{r['target_share']:>8.2f}")


    show(("gradcam", "centre", "uniform"))
    print(f"{len(board.image_index)} (image, class) pairs from {len(images)} test images; "
          f"target share on the {int((~board.baselines['uniform_target_share'].isnan()).sum())} "
          "pairs of 2-object images")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("02 scoreboard gradcam", table.text, tol=0.02)   # the same on every CPU

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    show(("hirescam", "layercam"))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("02 scoreboard hirescam layercam", table.text, tol=0.02)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Reading the table** (numbers as printed above):
#
# * Grad-CAM's energy share is highest at `layer3` (0.45, ceiling 0.89) and `layer4.0` (0.28,
#   ceiling 0.58); the last block's output `layer4` gets 0.20, `layer4.1.conv2` 0.14 and
#   `conv1` 0.08, against 0.04 for a uniform map. The ceiling is the best energy any map on
#   that grid can reach (notebook 01): on 7 x 7 it is 0.58, far above what any layer scores.
#   **Claim (b) does not hold** for Grad-CAM with the trained head: at `conv1` its energy is far below its grid's
#   ceiling (1.00), and its target share (0.52) is close to 0.5, no preference for the class
#   asked.
# * The elementwise methods do better at `conv1` (HiResCAM: energy 0.20, target share 0.75):
#   they keep *where* the gradient arrives, and that pattern comes from the deep layers.
#   Grad-CAM averages it away (section 5).
# * Strict pointing (the peak pixel on the object) is much lower than pointing within 15 px
#   at every layer: 0.72 against 1.00 at `layer4`, 0.07 against 0.17 at `conv1`. Its ceiling
#   is 1.00 on every grid (on 7 x 7 reached only by maps flat to 1e-4 over a few cells, whose
#   tied maxima `metrics.peak_location` sends to the cell nearest the image centre), so the grid does not explain the gap; the
#   finest grid, `conv1`, scores lowest. The 15 px tolerance forgives peaks next to the
#   object. Energy and target share separate the layers better.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### One comparison, with its uncertainty
#
# Two rows' means can differ by chance. `board.compare` takes the difference **per pair**
# (same image, same class) and bootstraps it over images: if the 95% interval excludes 0,
# these images show a difference.

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    for a, b in ((("layer4", "gradcam"), ("conv1", "gradcam")),
                 (("layer4", "gradcam"), ("layer4.1.conv2", "gradcam"))):
        for metric in ("energy", "target_share"):
            r = board.compare(a, b, metric=metric)
            print(f"{a[0]} - {b[0]:<15} Grad-CAM {metric:<13} {r['difference']:+.3f} "
                  f"[{r['low']:+.3f}, {r['high']:+.3f}]")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("02 layer differences", table.text, tol=0.01)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "fragment"}
# Both intervals printed for `layer4 - conv1` exclude 0 (energy +0.123 [+0.106, +0.140]).
# `layer4 - layer4.1.conv2` is smaller but also excludes 0 (energy +0.059 [+0.052, +0.066]):
# maps at `conv2` *are* less concentrated on the object, as the post says. Section 4 showed
# the skip gradient cannot be the cause. Between `conv2` and the block output lie three
# operations (`bn2`, the addition of the skip, the ReLU); notebook 05 measures each alone:
# with the trained head the addition carries the difference, with the post's random head
# it does not clear the margin.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7 · Your turn: the explorer
#
# Static preview first (another two-object image: `conv1`, `layer3`, `layer4` x three
# methods); the cell after it opens the live explorer, which needs a running kernel. Slide
# through **every** conv and block of the ResNet, including `layer4.1.conv1` and
# `layer4.1.conv2`, and compare the methods at `conv1`. In the preview, compare where
# Grad-CAM and HiResCAM put `layer3`'s map for the class asked; the scoreboard's target
# shares at `layer3` (0.97 for Grad-CAM, 0.98 for HiResCAM, printed in section 6) say how
# often each prefers that class over the other object.

# %% slideshow={"slide_type": "subslide"}
other = next(i for i in range(len(classes)) if i != pick and len(classes[i]) == 2)
maps = cams.explain(model, images[other:other + 1], ["conv1", "layer3", "layer4"],
                    target=classes[other][0], methods=("gradcam", "hirescam", "layercam"))
grid = {n: {cams.METHOD_TITLES[m]: v[0] for m, v in row.items()} for n, row in maps.items()}
fig = viz.plot_grid(images[other], grid, cell_size=2.0)
fig.suptitle(f"What the explorer shows: test image {other}, class "
             f"'{CLASS_NAMES[classes[other][0]]}', three layers x three methods", y=1.03)
plt.show()

# %% slideshow={"slide_type": "subslide"}
from gradcam_edu.explorer import Explorer

ex = Explorer(model, images[:12], class_names=CLASS_NAMES, layer="layer4")
ex

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * A torchvision `BasicBlock` calls one in-place `relu` twice: capture `relu#0` / `relu#1`
#   by call, and never keep a module's output without copying it (bare hooks on `bn1`/`bn2`
#   store values the block overwrote).
# * From `layer4.1.conv2` there is one gradient path to the logit; the skip sends gradient to
#   the block's input, past the branch. `conv2`'s map explains the last increment only.
# * At `layer4` Grad-CAM = HiResCAM = CAM (printed difference < 1e-5); at `conv1` at most one
#   entry in four of each channel gets any gradient (the grid effect).
# * The scoreboard reads each layer against its ceiling and the baselines, and a paired
#   bootstrap says whether two layers differ on these images.
#
# Next, notebook 03 cuts the ResNet short, the post's third example, one factor at a time.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Checkers come from `gradcam_edu.exercises`. The solutions are in the collapsed cells
# (click the three dots to open one); they are not executed in the committed notebook: try first.
#
# The first exercises practise what the notebook showed, as warm-ups; the last one asks for a
# **new measurement**, a number no cell above prints.
#
# **Exercise 1 · Naming the call.** Which capture name gives the same tensor as the output of
# block `layer4.1`?

# %% tags=["exercise"] slideshow={"slide_type": "subslide"}
from gradcam_edu.exercises.nb02 import (
    check_block_output_call,
    check_comparison,
    check_conv1_share,
    check_path_counts,
)

check_block_output_call("layer4.1.relu")      # replace with your answer

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
check_block_output_call("layer4.1.relu#1")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2 · Counting paths.** How many distinct gradient paths lead from each layer's
# output to the logit? (Every residual block after the layer is a fork: skip or branch.)

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
check_path_counts({"layer4.1.conv2": 2, "layer4.0.conv2": 2, "layer3.1.conv2": 4, "conv1": 8})

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
check_path_counts({"layer4.1.conv2": 1, "layer4.0.conv2": 2, "layer3.1.conv2": 4,
                   "conv1": 256})

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3 · The grid effect.** In one channel of conv1 (112 x 112 entries), at most
# what share of the entries can receive a nonzero gradient through the 3 x 3, stride-2
# max-pool? Compare with the `zero gradient entries` column printed in section 5.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
check_conv1_share(0.75)      # replace with your answer

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
check_conv1_share(56 * 56 / (112 * 112))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 · Reading an interval.** Is HiResCAM's energy share at `layer3` higher or
# lower than Grad-CAM's at `layer3`, or do these images give no evidence either way? Use
# `board.compare` and answer `"higher"`, `"lower"` or `"no evidence"`.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
a, b = ("layer3", "hirescam"), ("layer3", "gradcam")
check_comparison("?", board, a, b, metric="energy")     # replace "?" with your answer

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
r = board.compare(a, b, metric="energy")
answer = "higher" if r["low"] > 0 else "lower" if r["high"] < 0 else "no evidence"
check_comparison(answer, board, a, b, metric="energy")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 5 · A new measurement: class discrimination of one image.** For test image
# `pick` of section 3 (`x1`, its classes `ca` and `cb`, its masks `masks[pick]`), measure the
# target share of Grad-CAM for class `ca` at `layer3` and at `layer4`: the share of the map's
# mass on both objects that lies on `ca`'s object. Return a dict `{"layer3": ..., "layer4":
# ...}`. Hint: `cams.explain` and `metrics.target_share(maps, target_mask, other_mask)`, masks
# of shape (1, 224, 224). Before you run it: which layer will be more about `ca`?

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
shares = {"layer3": 0.5, "layer4": 0.5}      # replace with your measurement
check_target_shares(shares, model, x1, masks[pick], ca)

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
from gradcam_edu import metrics

two_maps = cams.explain(model, x1, ["layer3", "layer4"], ca)
shares = {la: metrics.target_share(two_maps[la]["gradcam"], masks[pick][:1],
                                   masks[pick][1:]).item() for la in ("layer3", "layer4")}
check_target_shares(shares, model, x1, masks[pick], ca)
