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
# # 05 · The verdict, and your own model
#
# *Part 5 of the course "Which layer of a ResNet can Grad-CAM explain?" · about 12 minutes.*
#
# The source post makes three claims. Notebooks 02 to 04 took them apart; here each one
# becomes a measurement with a 95% confidence interval and a verdict computed by a stated
# rule. Then we turn the toolkit on a model and an image of your own.
#
# **After this notebook you can**
# 1. compute a paired bootstrap confidence interval by hand, and say why it is *paired*;
# 2. state a claim as a comparison of two settings, and tell a comparison that changes one
#    factor from one that changes several;
# 3. read the verdict on each claim from printed numbers: **supported**, **unsupported** or
#    **confounded**;
# 4. run Grad-CAM, the scoreboard's tools and the explorer on any torchvision model and on
#    your own image file.

# %% slideshow={"slide_type": "skip"}
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torchvision
from PIL import Image, ImageDraw

from gradcam_edu import cams, metrics, models, recorded, viz, weights
from gradcam_edu.capture import capturable_layers
from gradcam_edu.explorer import Explorer
from gradcam_edu.images import imagenet_normalize, load_image_file
from gradcam_edu.models import imagenet_weight_path, torchvision_resnet
from gradcam_edu.shapes import CLASS_NAMES, shapes_sample
from gradcam_edu.verdict import claim_boards, format_claims, judge_claims

torch.manual_seed(0)
torch.set_num_threads(1)   # tiny models; one thread gives the same numbers on every machine
plt.rcParams.update({"figure.dpi": 90, "axes.titlesize": 10})

model = weights.load_model("resnet18-shapes")
N_IMAGES = 64
images, masks, classes = shapes_sample(N_IMAGES, split="test")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# Figure helper (plotting only): every comparison of every claim as a point with its 95%
# interval, coloured by the claim's verdict.
COLOURS = {"supported": "tab:green", "unsupported": "tab:red", "confounded": "tab:orange"}


def forest_plot(claims, xlabel):
    rows = [(c, comp) for c in claims for comp in c.comparisons()]
    ys = [i + 0.5 * "abc".index(c.key) for i, (c, _) in enumerate(rows)]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for y, (c, comp) in zip(ys, rows, strict=True):
        err = [[comp.difference - comp.low], [comp.high - comp.difference]]
        ax.errorbar(comp.difference, y, xerr=err, capsize=4, color=COLOURS[c.verdict],
                    fmt="s" if comp is c.isolated else "o")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(ys, [f"({c.key}) {'isolated' if comp is c.isolated else 'source'}: "
                       f"{comp.label}" for c, comp in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(handles=[plt.Line2D([], [], color=col, marker="o", ls="", label=v)
                       for v, col in COLOURS.items()], title="verdict", fontsize=8,
              loc="upper right")
    ax.set_title("The post's claims: paired differences with 95% bootstrap intervals")
    plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · Three claims, as comparisons
#
# Each claim says: maps are clearer in setting X than in setting Y, because of a cause. We
# measure two comparisons on the same (image, class) pairs:
#
# * the **source** comparison: the two settings the post compared, which may differ in
#   several factors (depth, head, hooked layer);
# * the **isolated** comparison: two settings that differ in the claimed **cause only**.
#
# | claim | source comparison (X vs Y) | isolated comparison (the cause alone) |
# |---|---|---|
# | (a) inside-block maps are noisy because of skip gradients | `layer4.1` vs `layer4.1.conv2` | `layer4.1.conv2` with the skip gradients removed vs with them |
# | (b) `conv1` gives clearer maps | `conv1` vs `layer4.1.conv2` | the same: only the layer changes |
# | (c) truncating gives clearer maps | example 3 vs example 1 (notebook 03, A vs D) | cut vs full model, both trained `fc`, both at `layer4.0.conv1` |
#
# For (a), `verdict.without_skip_gradient` copies the model and detaches every skip in the
# forward pass: the same values flow forward, but no gradient flows back through any skip.

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The rule** (`gradcam_edu.verdict.judge`), with X - Y > 0 meaning "as the claim says":
#
# * **supported**: the isolated comparison's 95% interval lies above 0: the cause alone
#   makes maps clearer;
# * **confounded**: the isolated interval does not, but the source interval does: the
#   difference the post saw is real, and comes from the other factors that changed with it;
# * **unsupported**: neither interval lies above 0.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · A paired bootstrap interval, by hand
#
# Both settings are scored on the **same** pairs, so we take the difference per pair first:
# what varies from image to image (easy and hard images) cancels. Then we resample
# **images** with replacement (the two pairs of a 2-object image stay together) and take the
# 2.5% and 97.5% quantiles of the resampled mean differences.

# %% slideshow={"slide_type": "subslide"}
boards = claim_boards(model, images, masks, classes)    # Grad-CAM scores of every setting
full = boards["full"]

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    x_scores = full.scores[("layer4.1", "gradcam")]["energy"]         # (pairs,)
    y_scores = full.scores[("layer4.1.conv2", "gradcam")]["energy"]
    diff = (x_scores - y_scores).double()                              # 1. per pair
    _, image_id = torch.unique(full.image_index, return_inverse=True)
    n_img = int(image_id.max()) + 1
    sums = torch.zeros(n_img, dtype=torch.float64).index_add_(0, image_id, diff)   # per image
    counts = torch.zeros(n_img, dtype=torch.float64).index_add_(0, image_id, torch.ones_like(diff))
    gen = torch.Generator().manual_seed(0)
    pick = torch.randint(0, n_img, (2000, n_img), generator=gen)       # 2. resample images
    boot = sums[pick].sum(1) / counts[pick].sum(1)                      # 3. mean difference
    low, high = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64))  # 4.
    print(f"energy, layer4.1 - layer4.1.conv2: {diff.mean():+.3f} [{low:+.3f}, {high:+.3f}] "
          f"({len(diff)} pairs, {n_img} images)")
    packaged = metrics.paired_bootstrap(x_scores, y_scores, 2000, 0, groups=full.image_index)
    print("same as metrics.paired_bootstrap:",
          all(abs(a - b) < 1e-9 for a, b in zip(packaged, (diff.mean(), low, high), strict=True)))
    unpaired = (x_scores.std() ** 2 / len(x_scores) + y_scores.std() ** 2 / len(y_scores)) ** 0.5
    print(f"interval half-width, paired: {(high - low) / 2:.3f}; unpaired (normal approx.): "
          f"{1.96 * unpaired:.3f}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 paired bootstrap by hand", table.text, tol=0.005)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Key sentence.** Pairing removes the image-to-image variation that both settings share;
# the last line above prints how much narrower the paired interval is than an unpaired one.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · The verdicts
#
# `verdict.judge_claims` builds the comparisons of section 1 from the scoreboards above
# (energy share on the object, Grad-CAM, 2000 bootstrap resamples) and applies the rule.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    claims = judge_claims(boards, metric="energy", n_boot=2000, seed=0)
    print(format_claims(claims))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 claims", table.text, tol=0.01)   # the same on every CPU

# %% slideshow={"slide_type": "subslide"}
forest_plot(claims, "energy difference X - Y (positive: as the claim says), 95% CI")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Does the verdict depend on the score?
#
# Energy rewards maps that keep their mass on the object. The pointing game (within 15 px)
# asks only whether the maximum lands on it. Same scoreboards, another metric:

# %% slideshow={"slide_type": "fragment"}
# NBVAL_CHECK_OUTPUT
by_metric = {m: judge_claims(boards, metric=m, n_boot=2000, seed=0)
             for m in ("energy", "pointing_tol")}
print(f"{'claim':<7}{'energy':<14}{'pointing@15px':<14}")
for k, key in enumerate("abc"):
    print(f"({key}){'':<4}{by_metric['energy'][k].verdict:<14}"
          f"{by_metric['pointing_tol'][k].verdict:<14}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the verdicts mean
#
# * **(a)** With the skip gradients removed, the map at `layer4.1.conv2` does not change at
#   all: the isolated difference is exactly zero, because no skip lies between that layer and
#   the score (notebook 02, section 4). The block output does beat `conv2` (+0.056 on
#   energy), so the verdict is *confounded*: the gap comes from the layer, not the skip.
#   `conv2` (before `bn2`, the addition and the ReLU) holds the block's increment, not its
#   features.
# * **(b)** `conv1` against `layer4.1.conv2` changes one factor, and the interval lies below
#   zero (-0.048): `conv1` localises *worse*. Its map is sharp because its grid is fine, but
#   it follows edges and colours, not the class.
# * **(c)** The post's comparison (+0.181) bundles three changes. Cutting alone, at the same
#   layer with the same head, still gives +0.074 with an interval above zero: *supported*,
#   for this model at `layer4.0.conv1`. Without `layer4.1`, the gradient reaches
#   `layer4.0.conv1` straight from the head instead of through one more block. Notebook 03's
#   ladder shows what each change adds, and what the cut costs in accuracy.
#
# These verdicts are the answer of *this* model on *these* images; the rule and the code run
# unchanged on yours.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · Your own image
#
# Any PIL image works. We draw one here (no download): a star and a ring on a shaded
# background, saved as a PNG in a temporary folder, then read back like any photo.

# %% slideshow={"slide_type": "subslide"}
folder = Path(tempfile.mkdtemp(prefix="gradcam_edu_"))
canvas = Image.new("RGB", (320, 240))
draw = ImageDraw.Draw(canvas)
for row in range(240):                                   # a vertical colour gradient
    draw.line([(0, row), (320, row)], fill=(60 + row // 3, 90, 150 - row // 4))
angles = [math.pi * k / 5 - math.pi / 2 for k in range(10)]     # a five-pointed star
radii = [45 if k % 2 == 0 else 19 for k in range(10)]
star = [(110 + r * math.cos(a), 120 + r * math.sin(a)) for a, r in zip(angles, radii)]
draw.polygon(star, fill=(250, 220, 40))
draw.ellipse((200, 80, 280, 160), fill=(30, 200, 90))
draw.ellipse((222, 102, 258, 138), fill=(100, 90, 120))
path = folder / "my_photo.png"
canvas.save(path)
photo = Image.open(path)
print("saved and reopened:", path.name, photo.size, photo.mode)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Which model? ImageNet weights if you have them, the shipped model otherwise
#
# `models.torchvision_resnet("resnet18", weights="imagenet")` reads torchvision's ImageNet
# weights from the local torch cache and **never downloads**. With them you can rerun the
# post's examples on its class 282 ("tiger cat") with a real photo. Without them, the cell
# says so and falls back to the shipped shapes model, which knows stars and rings.

# %% slideshow={"slide_type": "subslide"}
try:
    user_model = torchvision_resnet("resnet18", weights="imagenet")
    class_names = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    preprocess, target = imagenet_normalize, 282             # 'tiger cat', as in the post
    print("ImageNet ResNet-18 loaded from the local torch cache; target class 282:",
          class_names[282])
except FileNotFoundError:
    print(f"ImageNet weights for resnet18 ({imagenet_weight_path('resnet18').name}) are not in "
          "the local torch cache, and this course never downloads.\n"
          "Falling back to the shipped model 'resnet18-shapes' (classes: "
          f"{', '.join(CLASS_NAMES)}).")
    user_model = model
    class_names, preprocess, target = list(CLASS_NAMES), None, CLASS_NAMES.index("star")

# %% slideshow={"slide_type": "subslide"}
x = load_image_file(path, 224)[None]                     # (1, 3, 224, 224) in [0, 1]
x_in = preprocess(x) if preprocess is not None else x
with torch.no_grad():
    logits = user_model(x_in)
probs = models.probabilities(user_model, logits)   # sigmoid or softmax: the model says
top = probs[0].topk(3)
print("top classes:", ", ".join(f"{class_names[i]} {p:.2f}" for p, i in
                                zip(top.values.tolist(), top.indices.tolist(), strict=True)))
layers = ["conv1", "layer3.1", "layer4.1.conv2", "layer4"]
heat = cams.explain(user_model, x_in, layers, target, methods=("gradcam", "layercam"))

# %% slideshow={"slide_type": "subslide"}
fig = viz.plot_grid(x[0], {la: {cams.METHOD_TITLES[m]: heat[la][m][0] for m in heat[la]}
                           for la in layers}, cell_size=2.0,
                    title=f"Your image: maps for '{class_names[target]}'")
plt.show()

# %% [markdown] slideshow={"slide_type": "fragment"}
# Read it like the scoreboard taught us. With the shipped model, the last block (`layer4`)
# sits on the star, while Grad-CAM at `layer3.1` for "star" lights up the **ring**: an
# intermediate layer's map need not be about the class asked for. One image shows what can
# happen; only a measurement over many says how often.

# %% [markdown] slideshow={"slide_type": "subslide"}
# The explorer takes the same model, a list of PIL images (or tensors, or a data set) and, for
# ImageNet models, the normalisation to apply before the model (the views always show the
# image itself). Its **upload** button adds your own files while it runs.

# %% slideshow={"slide_type": "fragment"}
ex = Explorer(user_model, [photo], class_names=class_names, preprocess=preprocess,
              target=target, layer="layer4")
ex

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · Any torchvision model
#
# `capture` and `cams.explain` need nothing but layer names, the strings of
# `model.named_modules()`. `capturable_layers` lists those with a spatial output, in forward
# order; pick the last one that still has a spatial grid (here `features.12`, before the
# pooling), where a CAM is closest to the decision. The model is a MobileNetV3 with random
# weights: the pipeline runs, but the map of a random model means nothing.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
other = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).eval()
names = capturable_layers(other, x)
print(f"{len(names)} layers with a spatial output; the last four:", names[-4:])
heat = cams.explain(other, x, ["features.12"], target=0)["features.12"]["gradcam"]
print("Grad-CAM at features.12:", tuple(heat.shape), "values in [0, 1]:",
      bool(heat.min() >= 0 and heat.max() <= 1))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary: which layer of a ResNet can Grad-CAM explain?
#
# * **The last block's output** (`layer4`): there Grad-CAM is exactly CAM of the trained head,
#   a faithful map of where the head's evidence sits, on a coarse grid. Read its scores
#   beside the grid's ceiling.
# * **Inside a block** (`conv2`): the map explains the residual increment, not the features,
#   and no skip gradient is involved. **At `conv1`**: a sharp map of edges, blind to the
#   class, most of its gradient zeroed by the max-pool's grid (notebook 02).
# * **Truncated networks**: change one thing at a time; check the cut model's accuracy, and
#   give it a head trained for its features before reading its maps.
# * Every such statement is a **paired comparison with an interval**, and a verdict follows
#   from a rule, not from a glance at a heat map.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Checkers come from `gradcam_edu.exercises.nb05`; solutions are in the collapsed cells.
#
# **Exercise 1 · Apply the rule.** A claim's source comparison changes the depth and the head
# and measures +0.10 [+0.05, +0.15]; its isolated comparison (depth alone) measures +0.01
# [-0.02, +0.04]. Which verdict?

# %% slideshow={"slide_type": "subslide"}
from gradcam_edu.exercises.nb05 import check_last_block, check_model_input, check_verdict

answer = "supported"                                    # replace with your answer
check_verdict(answer, source=(0.10, 0.05, 0.15), isolated=(0.01, -0.02, 0.04))

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
check_verdict("confounded", source=(0.10, 0.05, 0.15), isolated=(0.01, -0.02, 0.04))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2 · Your image as a model input.** Turn the file at `path` into the input of the
# shipped models: a float tensor (1, 3, 224, 224) in [0, 1], short side resized to 224 and
# centre-cropped, without using `load_image_file`.

# %% slideshow={"slide_type": "fragment"}
import torchvision.transforms.functional as TF

my_x = TF.to_tensor(Image.open(path).convert("RGB").resize((224, 224)))   # replace
check_model_input(my_x, path)

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
img = Image.open(path).convert("RGB")
img = TF.center_crop(TF.resize(img, 224), [224, 224])
my_x = TF.to_tensor(img).unsqueeze(0)
check_model_input(my_x, path)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3 · The CAM layer of a bigger ResNet.** In torchvision's ResNet-50, which capture
# name gives the output of the last residual block (where Grad-CAM is CAM)?

# %% slideshow={"slide_type": "fragment"}
resnet50 = torchvision_resnet("resnet50", weights="random")
check_last_block(resnet50, "layer4.2.conv3")               # replace with your answer

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
check_last_block(resnet50, "layer4.2")
