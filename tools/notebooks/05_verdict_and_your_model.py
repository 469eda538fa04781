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
# *Part 5 of the course "Which layer of a ResNet can Grad-CAM explain?" · about 105 minutes (reading, running the cells, the questions and the exercises).*
#
# The source post makes three claims. Notebooks 02 to 04 took them apart; here each one
# becomes a measurement with a 95% confidence interval and a verdict computed by a stated
# rule. Then we turn the toolkit on a model and an image of your own.
#
# **After this notebook you can**
# 1. compute a paired bootstrap confidence interval by hand, and say why it is *paired*;
# 2. state a claim as a comparison of two settings, and tell a comparison that changes one
#    factor from one that changes several;
# 3. read the verdict on each claim from printed numbers: **supported**, **mixed**,
#    **confounded**, **inconclusive** or **unsupported**, on two axes (localisation and
#    clarity), with intervals that resample the training seeds as well as the images;
# 4. run Grad-CAM, the scoreboard's tools and the explorer on any torchvision model and on
#    your own image file.

# %% slideshow={"slide_type": "skip"}
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torchvision
from PIL import Image

from gradcam_edu import cams, metrics, post, recorded, viz, weights
from gradcam_edu.capture import capturable_layers
from gradcam_edu.claim_lab import ClaimLab
from gradcam_edu.explorer import Explorer
from gradcam_edu.images import course_photo, imagenet_crop, imagenet_normalize, imagenet_preprocess
from gradcam_edu.models import imagenet_weights, torchvision_resnet
from gradcam_edu.truncate import truncate
from gradcam_edu.shapes import CLASS_NAMES, shapes_sample
from gradcam_edu import gradflow
from gradcam_edu.claims import (
    PURPOSE_LAYERS,
    factorial_effects,
    faithfulness_table,
    inside_block_steps,
    measure_claims,
    post_decomposition,
    purpose_table,
)
from gradcam_edu.literature import format_literature, literature_table
from gradcam_edu.evidence import load_evidence, setting
from gradcam_edu.exercises.measure import check_seed_means
from gradcam_edu.exercises.predict import random_fc_question, reveal
from gradcam_edu.faithfulness_evidence import LAYER_GRIDS, load_faithfulness
from gradcam_edu.verdict import effect, format_claims, format_effects, seed_bootstrap, seed_margin

torch.manual_seed(0)
torch.set_num_threads(1)   # tiny models; one thread gives the same numbers on every machine
plt.rcParams.update({"figure.dpi": 90, "axes.titlesize": 10})

model = weights.load_model("resnet18-shapes")
N_IMAGES = 32
images, masks, classes = shapes_sample(N_IMAGES, split="test")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# Figure helper (plotting only): every comparison of every claim as a point with its 95%
# interval, coloured by the claim's verdict.
COLOURS = {"supported": "tab:green", "mixed": "tab:purple", "confounded": "tab:orange",
           "inconclusive": "tab:grey", "unsupported": "tab:red"}


def forest_plot(claims, xlabel):
    rows = [(c, e) for c in claims for e in c.effects() if e.derivation is None]
    ys = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.2))
    for y, (c, e) in zip(ys, rows, strict=True):
        err = [[e.difference - e.low], [e.high - e.difference]]
        ax.errorbar(e.difference, y, xerr=err, capsize=3, color=COLOURS[c.verdict],
                    fmt="o" if e is c.source else "s")
    ax.axvline(0, color="grey", lw=1)
    for c in claims[:1]:
        ax.axvspan(-c.margin, c.margin, color="grey", alpha=0.15, label="margin")
    ax.set_yticks(ys, [f"({c.key}) {e.label}" for c, e in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(handles=[plt.Line2D([], [], color=col, marker="s", ls="", label=v)
                       for v, col in COLOURS.items()], title="verdict", fontsize=8,
              loc="lower right")
    ax.set_title("The post's claims: effects with 95% intervals over seeds and images "
                 "(squares: isolated, circles: the post's comparison; grey band: margin)",
                 fontsize=9)
    plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · Three claims, as designed experiments
#
# Each claim says: maps are better in setting X than in setting Y, because of a cause. A
# setting is a list of **factors**: depth (full or cut after `layer4.0`), head (the post's
# random `fc`, the trained `fc`, or a probe: a linear head fitted to the cut's features),
# hooked layer, and whether gradient flows back through the skips. We measure the claimed
# cause **alone**, in every setting of the other factors that the claim could depend on:
#
# | claim | the cause, changed alone | where |
# |---|---|---|
# | (a) inside-block maps are noisy because of skip gradients | skip gradient off - on | `layer4.1.conv2` (by derivation) |
# | (a2) the same, where skip gradients arrive | skip gradient off - on | `conv1`, `layer3.1`, `layer4.0.conv1`, `layer4.0` |
# | (a3) `conv2` holds only a residual | adding the skip: `bn2 + skip` - `bn2` | inside `layer4.1`, with the post's random `fc` and with the trained `fc` |
# | (b) `conv1` gives clearer maps | `conv1` - `layer4.1.conv2` | random `fc`, trained `fc`, trained `fc` without skip gradients |
# | (c) truncating gives clearer maps | cut - full | 3 heads x 2 hook points (`layer4.0.conv1`, `layer4.0`) |
#
# `claims.isolated_effects` finds these comparisons in the evidence itself: every pair of
# measured settings that differ in the cause alone, so none can be left out by hand. The
# post's own comparison (its **source**) is measured too where it varies the cause.

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Two axes.** The post says "clearer". We score every map twice:
#
# * **localisation**: the *energy* share, the fraction of the map's mass on the object
#   $E = \sum_{p \in \text{mask}} m_p / \sum_p m_p$;
# * **clarity** (concentration): the Gini coefficient of the displayed map's pixel values
#   $x_{(1)} \le \dots \le x_{(n)}$, $G = \sum_i (2i - n - 1)\, x_{(i)} / (n \sum_i x_i)$:
#   0 for a flat map, close to 1 when the mass sits on a few pixels. A blank map (every value
#   clipped by the ReLU, frequent with the random head) counts as 0: it shows nothing, and
#   leaving it out would judge a method on its non-blank maps only. A clear map need not be
#   on the object: the two axes can disagree, and the verdict is given on each.
#
# The evidence uses held-out test images 0 to 127; notebooks 02 to 04 use the first 100 or
# 64 of the same images, so their tables are not independent replications of these, and
# baselines read slightly differently in each (the centre map's pointing within 15 px: 0.15
# in notebook 02, 0.17 in notebook 04, 0.18 here).

# %% slideshow={"slide_type": "subslide"}
ev = load_evidence()     # data/evidence.*: rebuilt with `python -m gradcam_edu.evidence`
print(f"{len(ev.scores)} settings x {len(ev.seeds)} training seeds ({', '.join(ev.meta['models'])})"
      f"\nx {len(ev.image_index)} (image, class) pairs from {len(ev.image_index.unique())} "
      f"held-out test images; Grad-CAM unless stated")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# Figure helper (plotting only): the maps with the lowest and highest clarity at one layer.
def clarity_examples(layer="layer4.0", n=3):
    maps = cams.explain(model, images[:32], [layer], [c[0] for c in classes[:32]],
                        methods=("gradcam",))[layer]["gradcam"]
    g = metrics.gini(maps)
    order = g.argsort()
    picks = list(order[:n]) + list(order[-n:])
    fig, axes = plt.subplots(1, 2 * n, figsize=(2.0 * 2 * n, 2.4))
    for ax, i in zip(axes, picks, strict=True):
        ax.imshow(viz.overlay(images[i], maps[i]))
        ax.set_title(f"test {int(i)}: G = {g[i]:.2f}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"Clarity (Gini) of Grad-CAM maps at {layer}: the {n} lowest and the {n} "
                 "highest of 32 test images", fontsize=10)
    plt.show()


# %% slideshow={"slide_type": "fragment"}
clarity_examples()

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Predict, then check** (before you scroll on: later cells print the answer). Claim (b) as the post ran it, with its random `fc`: is Grad-CAM at
# `conv1` clearer (a higher Gini) than at `layer4.1.conv2`? Commit to an answer (set
# `my_prediction`), then run the cell; section 3 then judges the claim in every setting.

# %% slideshow={"slide_type": "fragment"}
my_prediction = None      # your prediction: "higher", "about the same" or "lower"
reveal(my_prediction, random_fc_question(ev))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · A paired interval, by hand, over images and training seeds
#
# Both settings are scored on the **same** pairs, so we take the difference per pair first:
# what varies from image to image (easy and hard images) cancels. Then we resample, 2000
# times, **the training seeds** (3 models trained from different random initialisations and
# batch orders) and **the images** (the two pairs of a 2-object image stay together), and take
# the 2.5% and 97.5% quantiles of the resampled mean differences. The interval then includes
# the variation between the 3 trained models as well as between images (with 3 models, only
# partly: see the margin below).

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    x_scores = ev.get(setting(layer="layer4.1"), "energy").double()        # (seeds, pairs)
    y_scores = ev.get(setting(layer="layer4.1.conv2"), "energy").double()
    diff = x_scores - y_scores                                              # 1. per pair
    _, image_id = torch.unique(ev.image_index, return_inverse=True)
    n_seed, n_img = diff.shape[0], int(image_id.max()) + 1
    sums = torch.zeros(n_seed, n_img, dtype=torch.float64).index_add_(1, image_id, diff)
    counts = torch.zeros(n_img, dtype=torch.float64).index_add_(
        0, image_id, torch.ones(len(image_id), dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    pick_img = torch.randint(0, n_img, (2000, n_img), generator=gen)    # 2. resample images
    pick_seed = torch.randint(0, n_seed, (2000, n_seed), generator=gen)  # ... and seeds
    per_seed = sums[:, pick_img].sum(-1) / counts[pick_img].sum(-1)      # (seeds, 2000)
    boot = per_seed.gather(0, pick_seed.T).mean(0)                       # 3. mean difference
    low, high = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64))  # 4.
    print(f"energy, layer4.1 - layer4.1.conv2: {diff.mean():+.3f} [{low:+.3f}, {high:+.3f}]")
    print("per seed:", "  ".join(f"{v:+.3f}" for v in diff.mean(1).tolist()))
    packaged = effect(ev, setting(layer="layer4.1"), setting(layer="layer4.1.conv2"), "energy")
    print("same as verdict.effect:", all(abs(a - b) < 1e-9 for a, b in zip(
        (packaged.difference, packaged.low, packaged.high), (diff.mean(), low, high),
        strict=True)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 paired bootstrap by hand", table.text, tol=0.002)   # stored scores

# %% [markdown] slideshow={"slide_type": "subslide"}
# **How big must an effect be?** Retraining alone moves a setting's mean score. The margin
# below is the median, over all measured settings, of the standard deviation of the mean
# score across the 3 seeds (`verdict.seed_margin`): an effect whose interval does not clear
# it is not counted. It is a convention, not a law: section 3 prints the verdicts at margins
# 0 and 0.03 as well. Three seeds are few: a bootstrap over 3 seeds draws only 10 distinct
# sets of seeds, so its intervals understate how much a fourth model could differ. The
# per-seed means are printed beside every effect below; read them too.

# %% slideshow={"slide_type": "fragment"}
# NBVAL_CHECK_OUTPUT
AXES = {"energy": "localisation", "clarity": "clarity"}
margins = {m: seed_margin(ev, m) for m in AXES}
for m, v in margins.items():
    print(f"margin for {m} ({AXES[m]}): {v:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · The rule, and the verdicts
#
# **The rule** (`gradcam_edu.verdict.judge`), with "above" meaning: the whole 95% interval
# lies above the margin, in the claim's direction:
#
# * **supported**: every isolated effect is above;
# * **mixed**: some are above, others not: the claim holds only in some settings (named);
# * **confounded**: every isolated interval lies *below* the margin (the effect is ruled
#   out), but the post's comparison, which changed the cause *together with other factors*,
#   is above: the difference the post saw is real and comes from the other factors;
# * **inconclusive**: none is above, but some interval still reaches above the margin: the
#   data neither show the effect nor rule it out;
# * **unsupported**: every isolated interval lies below the margin (or the effect is 0 by
#   derivation), and no comparison of several changes shows a real difference.
#
# An effect that the structure of the network fixes at zero is shown as a **derivation**,
# not as a measured interval. `judge` refuses an "isolated" effect that changes more than the
# cause, and a source comparison that does not vary the cause at all.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    claims = {m: measure_claims(ev, m) for m in AXES}
    print(format_claims(claims["energy"]))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 claims energy", table.text, tol=0.002)   # stored scores

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    print(format_claims(claims["clarity"]))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 claims clarity", table.text, tol=0.002)   # stored scores

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
print(f"{'claim':<7}{'localisation (energy)':<24}{'clarity (Gini)':<16}")
for k, c in enumerate(claims["energy"]):
    print(f"({c.key}){'':<{4 - len(c.key)}}{c.verdict:<24}{claims['clarity'][k].verdict:<16}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Blank maps.** A map whose every value the ReLU clips is blank: its Gini is 0. How often
# that happens in claim (b)'s settings:

# %% slideshow={"slide_type": "fragment"}
# NBVAL_CHECK_OUTPUT
for head in ("random fc", "trained fc"):
    for la in ("conv1", "layer4.1.conv2"):
        g = ev.get(setting(head=head, layer=la), "clarity")
        print(f"{head:<11}@ {la:<15} blank (Gini 0) in {int((g == 0).sum()):>3} of {g.numel()} "
              "(seed, pair) maps")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Claim (b)'s clarity effect depends on that convention, and on a second property of Gini:
# a map that is *nearly* empty (a few bright pixels) scores close to 1, very "clear". The
# cell prints the effect as counted, the effect with every pair where either map is blank
# left out, and the share of maps with a Gini above 0.9.

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    for head in ("random fc", "trained fc"):
        a, b = setting(head=head, layer="conv1"), setting(head=head, layer="layer4.1.conv2")
        ga, gb = ev.get(a, "clarity"), ev.get(b, "clarity")
        no_blank = (ga - gb).double().masked_fill((ga == 0) | (gb == 0), float("nan"))
        mean, low, high, _ = seed_bootstrap(no_blank, ev.image_index)
        kept = int((~no_blank.isnan().any(0)).sum())
        print(f"{head}: conv1 - layer4.1.conv2, clarity {effect(ev, a, b, 'clarity').text()} "
              f"as counted;\n  {mean:+.3f} [{low:+.3f}, {high:+.3f}] on the {kept} of "
              f"{ga.shape[1]} pairs without a blank map; Gini > 0.9: "
              f"{float((ga > 0.9).double().mean()):.2f} of conv1's maps, "
              f"{float((gb > 0.9).double().mean()):.2f} of layer4.1.conv2's")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 blank-map sensitivity", table.text, tol=0.002)   # stored scores

# %% [markdown] slideshow={"slide_type": "subslide"}
# **How much hangs on the margin?** The same effects, judged at a margin of 0, at the seed
# margin and at 0.03:

# %% slideshow={"slide_type": "fragment"}
# NBVAL_CHECK_OUTPUT
for m in AXES:
    levels = sorted({0.0, margins[m], 0.03})
    verdicts = {v: [c.verdict for c in measure_claims(ev, m, v)] for v in levels}
    print(f"{m:<8}" + "".join(f"margin {v:<6g}".ljust(16) for v in levels))
    for k, c in enumerate(claims[m]):
        print(f"  ({c.key})".ljust(8) + "".join(f"{verdicts[v][k]:<16}" for v in levels))

# %% slideshow={"slide_type": "subslide"}
forest_plot(claims["energy"], "energy difference (positive: as the claim says), 95% CI over "
            "seeds and images")

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Inside `layer4.1`: what separates `conv2` from the block output
#
# Between `conv2` and the block output lie three operations: the batch norm `bn2` (a
# per-channel scale and shift, which changes what the ReLU will clip), the addition of the
# skip, and the ReLU. `variants.with_sum_points` adds a hookable point for `bn2 + skip`, so
# each step changes one operation:

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    for m in AXES:
        print(f"{m}:")
        print(format_effects(inside_block_steps(ev, m)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 inside the block", table.text, tol=0.002)   # stored scores

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Claim (c) as a factorial: head x hook point x depth
#
# Every combination of the three factors was measured, so each factor's **main effect** is
# its change averaged over the others, and an **interaction** says how much one factor's
# effect depends on another's level. No order of steps is imposed, so nothing depends on it.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    for m in AXES:
        print(f"{m}:")
        print(format_effects(factorial_effects(ev, m)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 factorial c", table.text, tol=0.002)   # stored scores

# %% [markdown] slideshow={"slide_type": "slide"}
# ### The post's comparison, step by step
#
# The post went from example 1 (random `fc`, `layer4.1.conv2`, full model) to example 3
# (trained `fc`, `layer4.0.conv1`, cut model): three factors at once. Each row below changes
# one of them. Order A changes the head first (A1: random -> trained `fc`, at
# `layer4.1.conv2`), then the hook point (A2: `layer4.1.conv2` -> `layer4.0.conv1`, with the
# trained `fc`); order B the hook point first (B1, with the random `fc`), then the head (B2);
# both end with depth (3: full -> cut). A1 + A2 + 3 and B1 + B2 + 3 each add up to the total.
# When the two orders disagree, the two factors interact.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    for m in AXES:
        print(f"{m}:")
        print(format_effects(post_decomposition(ev, m)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 post decomposition", table.text, tol=0.002)   # stored scores

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the verdicts mean
#
# Read with the effects printed above (every number below is printed there):
#
# * **(a) unsupported, by derivation.** At `layer4.1.conv2` skip gradients cannot change the
#   map: that is a derivation (printed with the claim), not a measurement, and
#   `measure_claims` checks that the stored scores with and without skip gradients are
#   identical there (`tests/test_variants.py` checks the maps).
# * **(a2)** Where skip gradients do arrive, removing them *hurts* at `layer3.1` (-0.082
#   energy) and at `layer4.0.conv1` (-0.054); at `layer4.0` (+0.011 [+0.007, +0.016]) and at
#   `conv1` ([-0.027, +0.019]) the intervals still reach above the margin: **inconclusive**
#   on energy, **unsupported** on clarity. Removing skip gradients also
#   means the backward pass is no longer the model's gradient; "skip dilution" is not what
#   makes these maps worse.
# * **(a3) mixed.** With the trained `fc`, adding the skip (`bn2 + skip - bn2`) is the large
#   step inside the block (+0.063 energy, +0.093 clarity; BN alone -0.011, the ReLU +0.011
#   energy). With the post's random `fc` it is +0.009 [-0.022, +0.032] on energy and
#   +0.009 [-0.013, +0.025] on clarity, not beyond the margin: the block's increment alone
#   is a worse map only when the head is trained.
# * **(b) inconclusive on energy, mixed on clarity, and the clarity half rests on a
#   convention.** With the post's random `fc` (its example 2 keeps example 1's
#   `model.fc = nn.Linear(512, 1000)`), `conv1` minus `layer4.1.conv2` is +0.000 [-0.043,
#   +0.054] on energy: the interval is wide, neither shown nor ruled out; with the trained
#   `fc` `conv1` is *worse* (-0.065). On clarity, with the random `fc`, `conv1` is clearer by
#   +0.095 [+0.029, +0.158] as counted, and the rule calls (b) *mixed*. But the random head
#   leaves the map at `layer4.1.conv2` blank in 68 of 573 maps (Gini 0; 2 at `conv1`);
#   without the pairs where a map is blank the effect is +0.030 [-0.025, +0.082], whose
#   interval reaches below the margin (on those pairs (b) would be *inconclusive*). Most of
#   the as-counted effect is that the random head blanks `layer4.1.conv2`'s map more often,
#   not that non-blank `conv1` maps are more concentrated. (Gini also rewards a few bright
#   pixels: 0.41 of `conv1`'s maps with the random `fc` and 0.49 with the trained one score
#   above 0.9.) Blank maps count as 0 in the main analysis; read the verdict with the
#   blank-map cell beside it. The random `fc` is one draw (seed 0) for all three models. With
#   the trained `fc` no map at `layer4.1.conv2` is blank (2 of 573 at `conv1`), and neither
#   interval clears the margin. With the trained head, the purpose table below puts
#   `conv1`'s Gini below the block outputs' and above `layer4.1.conv2`'s: its grid is finer,
#   its mass is not more concentrated.
# * **(c) confounded on energy, inconclusive on clarity.** Cutting alone never clears the
#   margin in the claimed direction in any of the six settings; with the probe, the fair head for each depth, the cut
#   is worse beyond the margin at `layer4.0` (-0.048) and within it at `layer4.0.conv1`
#   (-0.017). The post's comparison (+0.242) is real. The step-by-step table shows where it
#   comes from: depth adds -0.002; the rest is the head and the hook point **together**.
#   Moving from `layer4.1.conv2` to `layer4.0.conv1` gives +0.179 with the trained head and
#   +0.024 with the random one; the head alone gives +0.065 at `layer4.1.conv2`; their
#   interaction is +0.156. Each factor alone is small in one of the two orders; together
#   they make the +0.242.
# * **The margin matters** (the table of margins above). At a margin of 0, (c) on energy
#   becomes *inconclusive* (two intervals reach above 0: +0.002 [-0.008, +0.011] and -0.002
#   [-0.008, +0.003]) and
#   (a2) on energy *mixed*; at 0.03, (a2) on energy becomes *unsupported* and (b) on
#   clarity *inconclusive*. The verdicts
#   in the text are those at the seed margin. The many intervals in this notebook are not
#   adjusted for multiple comparisons: read a single interval that barely clears the margin
#   with care.

# %% [markdown] slideshow={"slide_type": "slide"}
# ### The claim lab: change one factor, see the map and the difference
#
# The verdicts rest on tables. The lab puts the same factors under your hands, on 16 held-out
# images of the shipped model (training seed 0): the **head** (the post's random `fc`, the
# trained `fc`, a probe), the **depth** (full, or cut after `layer4.0`), the **skip
# gradient** (on, off) and the **hook point** in the model's last block (`conv1`, `conv2`,
# `bn2`, the sum before the ReLU, the block output). Every setting is computed once, when the
# lab opens (a progress bar shows it); after that a click only looks up and redraws.
#
# It shows two maps with the objects outlined: the current setting and the one it is
# compared with, either the post's example 1 or **the setting before your last change**. In
# the second mode each click changes one factor, and the line under the maps is that
# factor's isolated effect: the paired difference over the lab's (image, class) pairs, with
# its 95% interval over images. One seed and 16 images: a smaller, noisier version of the
# evidence above, for seeing, not for verdicts.
#
# Until your first click, "before your last change" is the post's example 1. The hook points
# are those of the model's **last block** ("block conv1" is that block's first convolution,
# the post's example 3 hooks it in the cut model; not the stem's `conv1` of claim (b)), and
# the random `fc` is one random draw (seed 0).
#
# Try: set the comparison to "before your last change" and turn the skip gradient off. At
# every hook point the lab offers, the maps do not change: no skip carries gradient into the
# last block's branch or its output (claim (a), by derivation). This toggle cannot show
# anything else here, by design: where skip gradients do arrive (claim (a2), `layer3.1`,
# `layer4.0.conv1`) the tables of section 3 measured their effect. Then move the hook point
# from `conv2` to the sum before the ReLU, with the trained head and with the random one
# (claim (a3)).

# %% slideshow={"slide_type": "subslide"}
lab = ClaimLab(n_images=16)   # precomputes every setting (progress bar), then answers at once
lab

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · What the literature says, next to what we measure
#
# Six published findings about these methods and networks, each with our number (95%
# interval over the 3 seeds and 128 images where it is a measurement) and a word on agreement
# decided by the rule printed with it. The randomisation sanity check is in the evidence
# (notebook 04, section 6: 3 seeds, 32 images); the gradient flow at every block input
# (notebook 02, section 4) and the difference between HiResCAM's and Grad-CAM's maps
# (HiResCAM's finding is about maps, not scores) are measured here on the shipped model,
# 32 test images.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    first = [c[0] for c in classes]
    flows = gradflow.flow_table(gradflow.gradient_flow(model, images, first))
    pair = cams.explain(model, images, ["layer3.1", "layer4.1"], first,
                        methods=("gradcam", "hirescam"))
    map_gaps = {la: float((m["hirescam"] - m["gradcam"]).abs().flatten(1).amax(1).mean())
                for la, m in pair.items()}
    print(format_literature(literature_table(ev, flows, map_gaps)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 literature", table.text, tol=0.02)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Where we agree and where we do not** (the words above come from the printed rules).
# LayerCAM's shallow-layer advantage is reproduced. HiResCAM's finding is about maps, and it
# holds: at the last block the two maps are equal (the pooled linear head makes the gradient
# constant over space: a mean largest pixel difference below 1e-5, float32 rounding), at
# `layer3.1` they differ (0.62), although their *scores* there differ little (energy +0.018,
# within the margin).
# "Progressively worse in earlier layers" holds only in part: the energy rises from
# `layer1.1` to `layer3.1`, then falls at `layer4.1`, whose 7 x 7 grid is coarse for objects
# of this size, though the grid is not the whole reason: `layer4.0`, on the same grid, scores
# 0.28 (purpose table). The sanity check is read after randomising the top of the network (`fc`,
# `layer4`), where Adebayo et al. saw Guided Backprop stay unchanged, and agrees; after `fc`
# alone Grad-CAM at `layer4.1` already falls to 0.12, so its pass does not depend on
# randomising the layer it is computed at. With every layer random Guided Backprop
# decorrelates too (0.14), unlike in their paper (notebook 04, section 6). Veit et al.'s
# short paths are about path lengths, which we did not measure: the skip share is context,
# not a test. The centre baseline is weak here because our objects are placed anywhere,
# unlike VOC's photos.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Faithfulness beside localisation
#
# Localisation asks whether a map sits on the object; **faithfulness** asks whether the
# pixels it ranks first are the ones the model's score depends on. Deletion blacks out the
# map's most salient pixels first, in 16 steps, and records the class probability (the area
# under that curve: lower is better); insertion reveals them on a blurred image (higher is
# better). Scored on the first 64 images of the evidence (the same pairs), every seed, with
# three maps that contain no model as references: random noise, the centre map, and the
# object's own mask (blurred). The mask is a reference, not a bound: the model may rely on
# pixels next to the object, so a map can beat it. (`data/faithfulness.*`, rebuilt with
# `python -m gradcam_edu.faithfulness_evidence`.)

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    fe = load_faithfulness()
    print(faithfulness_table(fe, ev))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 faithfulness", table.text, tol=0.002)   # stored scores

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Reading it.** A coarse map deletes in blocks, and blocks of pixels matter more to the
# model than scattered ones, so each map is compared with random noise **on its own grid**
# (the second column, paired). Only the last stage beats it beyond the margin: `layer4.0`,
# `layer4.1.conv2` and `layer4.1`, with every method (-0.30 to -0.37). These maps also
# remove the class faster than the object's own mask does (0.15 to 0.22 against 0.236): the
# pixels they rank first are what the score depends on, even where their energy is low.
# `layer3.1`, the best localiser, is not beyond the margin (Grad-CAM -0.107
# [-0.191, -0.019]); the shallow layers are within noise of random blocks of their grid,
# and Grad-CAM at `conv1` is worse than them (+0.083 [+0.001, +0.171]). Insertion is near
# its top for most maps (0.97 to 0.98, the mask 0.979): a blurred image of flat-coloured
# shapes stays recognisable, so revealing pixels adds little. It separates only Grad-CAM's
# shallow maps (0.86 to 0.90) and the coarse random maps (0.81 to 0.83), below per-pixel
# noise (0.941). Deleting pixels also shows the model images unlike its training images;
# deletion scores carry that too.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Which layer for which purpose
#
# The course measured five things about a map: whether it sits on the object (energy),
# read against the best any map on its grid can reach (the **ceiling**,
# `metrics.energy_ceiling`, on the same pairs), how concentrated it is (Gini), whether it
# prefers the class asked over the other object (target share, 2-object images), and, above,
# how faithful it is. The table is printed from the evidence (Grad-CAM, trained head, 3
# seeds, 128 images).

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    _, ev_masks, ev_classes = shapes_sample(ev.meta["n_images"], split="test")
    pair_masks = torch.stack([m[k] for m, c in zip(ev_masks, ev_classes, strict=True)
                              for k in range(len(c))])
    ceilings = {}
    for la in PURPOSE_LAYERS:
        g = LAYER_GRIDS[la]
        ceilings[la] = (f"{g}x{g}", float(metrics.energy_ceiling(pair_masks, g).mean()))
    print(purpose_table(ev, ceilings=ceilings))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("05 purpose table", table.text, tol=0.002)   # stored scores

# %% [markdown] slideshow={"slide_type": "fragment"}
# **The trade-off.** No layer wins everything. The last block (`layer4.1`, = CAM of the
# trained head) and `layer4.0` discriminate the class best (target share 0.98); `layer4.1`
# and its `conv2` delete best (0.153, 0.149; `layer4.0` next, 0.178): the last block is what
# the head uses, on a coarse grid. `layer3.1`
# localises and concentrates best (energy 0.42, Gini 0.86), with a slightly lower target
# share (0.95) and a worse deletion score; read against the ceiling of its finer grid it
# ties with `layer4.0` (energy / ceiling 0.47 and 0.49), so much of its lead is the grid.
# Early layers (`conv1` to `layer2.1`) give fine-grained maps that localise little (energy
# 0.07 to 0.11), prefer the class little (target share 0.50 to 0.61), and delete no better
# than random blocks of their own grid. Which layer to explain
# depends on the question: *what did the head use* (the last block: faithful by deletion),
# *where is the object* (a middle layer, checked against its ceiling), *which pixels* (a
# pixel attribution, with its sanity check).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · The post's own setting: a photo, its code, its bugs
#
# The post runs its three examples on a photo of a cat with torchvision's ImageNet
# ResNet-18, for class 282 ("tiger cat"). `models.torchvision_resnet` reads those weights
# from the local torch cache and **never downloads**. Without them, this section runs the
# same code on the shipped shapes model and a test image (a cat means nothing to it).

# %% slideshow={"slide_type": "subslide"}
path = Path(post.__file__).resolve().parent.parent / "data" / "photos" / "chelsea.png"
photo = course_photo("chelsea")                           # 451 x 300, RGB
try:
    user_model = torchvision_resnet("resnet18", weights="imagenet")
except FileNotFoundError:
    user_model = None
if user_model is not None:                                # the post's setting
    class_names = list(imagenet_weights("resnet18").meta["categories"])
    x_in = post.post_input(photo)                         # the post's transforms, (1, 3, 224, 224)
    x = imagenet_crop(photo)[None]                        # the same crop, in [0, 1], to show
    preprocess, target, mask = imagenet_normalize, post.POST_TARGET, None
    print(f"ImageNet ResNet-18 from the local torch cache; class {target}: {class_names[target]}")
    print("the post's preprocessing = images.imagenet_preprocess:",
          torch.equal(x_in[0], imagenet_preprocess(photo)))
else:
    print("No ImageNet weights here: run `make fetch` (or `python -m gradcam_edu fetch "
          "resnet18`) once; meanwhile the shipped model 'resnet18-shapes' and test image 0.")
    user_model, class_names = model, list(CLASS_NAMES)
    x = x_in = images[:1]                                 # the shapes models take [0, 1]
    preprocess, target, mask = None, classes[0][0], masks[0][0]
print("input:", tuple(x_in.shape), "| class:", class_names[target], "| top 3:",
      ", ".join(f"{class_names[c]} {p:.2f}" for c, p in post.top_classes(user_model, x_in)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Example 1 as the post wrote it
#
# `gradcam_edu.post.grad_cam` is the post's function line for line (only its backward goes
# through the capture). It receives the **module** `model.layer4[1].conv2`, as the post
# passes it, and stops at its first line that reads a gradient:

# %% slideshow={"slide_type": "fragment"}
# NBVAL_CHECK_OUTPUT
out = post.run_post_grad_cam(user_model, x_in, target, "layer4.1.conv2")
print(f"{type(out).__name__}: {out}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# A module holds weights, not the tensor it produced in the last forward: the output and its
# gradient must be recorded while the model runs, with hooks (`capture`). With that fixed,
# each later line of the post's code still fails or misleads. `post.post_bugs` runs every
# one on this model and input and says what happens:

# %% slideshow={"slide_type": "fragment"}
for bug in post.post_bugs(user_model, x_in, target, "layer4.1.conv2", class_names):
    print(f"{bug.name}\n    happens: {bug.happens}\n    fix:     {bug.fix}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# Two of them change the science, not just the code. The random `fc` of examples 1 and 2
# makes their maps explain a random head (claim (b) above measured what that does). The
# division by the maximum turns a map that the ReLU blanked into NaN: the blank maps that
# section 3 counted would have been NaN in the post's code. (`post.nan_case` searches the
# classes, least likely first, for one whose map is blank here; the class it finds need not
# be in the image, but section 3 counted such maps for classes that are.) Example 3's `ModifiedResNet`
# (also in `gradcam_edu.post`, as written) is the package's `truncate`, with the module
# names changed:

# %% slideshow={"slide_type": "fragment"}
cut = truncate(user_model, after="layer4.0")              # keeps the trained fc, as the post
with torch.no_grad():
    gap = (post.ModifiedResNet(user_model)(x_in) - cut(x_in)).abs().max()
print(f"ModifiedResNet(model) and truncate(model, 'layer4.0'): largest logit difference "
      f"{gap:.1e}; its layer4_0.conv1 is the cut's layer4.0.conv1")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The three examples, fixed
#
# The trained head, the layer's output and gradient from the capture, Grad-CAM's weights per
# channel, a guarded normalisation, and the map blended over the image it explains.

# %% slideshow={"slide_type": "fragment"}
fixed = post.fixed_examples(user_model, x_in, target)
fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
for ax, (title, cam) in zip(axes, fixed.items(), strict=True):
    ax.imshow(post.fixed_display(x[0], cam))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.colorbar(plt.cm.ScalarMappable(cmap=viz.HEAT_CMAP), ax=axes.tolist(), shrink=0.8,
             label="map value (0 to 1)")
fig.suptitle(f"The post's three examples, fixed: Grad-CAM for '{class_names[target]}'",
             fontsize=10)
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The layers, as the course measures them
#
# The post's two layers, the output of the cut model's last block (`layer4.0`, trained head)
# and the full model's last block (`layer4`, where Grad-CAM is CAM). Clarity is the Gini of
# the map, deletion the area under the class probability as the map's top pixels are zeroed
# in 16 steps (lower: the map found what the score needs); energy, the share on the object,
# needs the object's mask, which only the shapes image has.

# %% slideshow={"slide_type": "fragment"}
rows = post.compare_layers(user_model, x_in, target, mask)
print(f"{'layer':<16}{'grid':>9}{'clarity':>9}{'deletion':>10}" + ("   energy" if mask is not None else ""))
for name, r in rows.items():
    print(f"{name:<16}{'x'.join(map(str, r['grid'])):>9}{r['gini']:>9.3f}{r['deletion']:>10.3f}"
          + (f"{r['energy']:>9.3f}" if mask is not None else ""))
fig, axes = plt.subplots(1, 4, figsize=(11, 3.2))
for ax, (name, r) in zip(axes, rows.items(), strict=True):
    ax.imshow(post.fixed_display(x[0], r["map"]))
    ax.set_title(f"{name} ({'x'.join(map(str, r['grid']))})", fontsize=9)
    ax.axis("off")
fig.colorbar(plt.cm.ScalarMappable(cmap=viz.HEAT_CMAP), ax=axes.tolist(), shrink=0.8,
             label="map value (0 to 1)")
plt.show()

# %% [markdown] slideshow={"slide_type": "fragment"}
# Read it against the purpose table and the faithfulness table above, not on its own: one
# image is an example, not a measurement, and a single image can disagree with both (on the
# shapes image of the fallback, `conv1` deletes best, while over the evidence's images it is
# the worst layer by deletion). `conv1` draws edges on its fine grid whatever the class; the last block's map
# is what the trained head used; the cut's `layer4.0` map comes from a head that was trained
# on `layer4.1`'s features.

# %% [markdown] slideshow={"slide_type": "subslide"}
# The explorer takes the same model, a list of PIL images (or tensors, or a data set) and, for
# ImageNet models, the normalisation to apply before the model (the views always show the
# image itself). With ImageNet weights it opens on the cat; without them, on shapes images. Its **upload** button adds your own files while it runs.

# %% slideshow={"slide_type": "fragment"}
shown = [photo] if preprocess is not None else images[:12]   # the shapes model: shapes images
ex = Explorer(user_model, shown, class_names=class_names, preprocess=preprocess,
              target=target, layer="layer4")
ex

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · Any torchvision model
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
# * **The last block's output** (`layer4`): there Grad-CAM is exactly CAM of the trained
#   head (a derivation: the head is a global average pool and a linear layer, so the
#   gradient is the same at every position; notebook 02, section 5). Deletion agrees: its top pixels are what
#   the score depends on (section on faithfulness), on a coarse grid whose ceiling must be
#   read beside its energy.
# * **Inside a block** (`conv2`): the map explains the block's increment, not the features,
#   and no skip gradient is involved (a derivation). With a trained head the addition of the
#   skip is what makes the block output localise better. **At `conv1`**: a fine-grained map
#   of edges, blind to the class, worse by deletion than random blocks of its grid, most of
#   its gradient zeroed by the max-pool's grid (notebook 02).
# * **Truncated networks**: depth alone did not give better maps in any setting we measured.
#   The post's gain came from the trained head and the move from `layer4.1.conv2` to
#   `layer4.0.conv1`, the two together. Check the cut model's accuracy, and give it a head
#   trained for its features, before reading its maps.
# * Every such statement is a **paired comparison with an interval** over images and
#   training seeds, judged by a stated rule and margin; where the data neither show an
#   effect nor rule it out, the verdict says *inconclusive*.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Checkers come from `gradcam_edu.exercises`. The solutions are in the collapsed cells
# (click the three dots to open one); they are not executed in the committed notebook: try first.
#
# The first exercises practise what the notebook showed, as warm-ups; the last one asks for a
# **new measurement**, a number no cell above prints.
#
# **Exercise 1 · Apply the rule.** A claim's source comparison changes the depth and the head
# and measures +0.10 [+0.05, +0.15]. Depth alone was measured in two settings of the head:
# +0.06 [+0.03, +0.09] and -0.03 [-0.05, -0.01]. With a margin of 0, which verdict?

# %% tags=["exercise"] slideshow={"slide_type": "subslide"}
from gradcam_edu.exercises.nb05 import check_last_block, check_model_input, check_verdict

answer = "supported"                                    # replace with your answer
check_verdict(answer, isolated=[(0.06, 0.03, 0.09), (-0.03, -0.05, -0.01)],
              source=(0.10, 0.05, 0.15))

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
check_verdict("mixed", isolated=[(0.06, 0.03, 0.09), (-0.03, -0.05, -0.01)],
              source=(0.10, 0.05, 0.15))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2 · Your image as a model input.** Turn the file at `path` into the input of the
# shipped models: a float tensor (1, 3, 224, 224) in [0, 1], short side resized to 224 and
# centre-cropped, without using `load_image_file`.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
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

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
resnet50 = torchvision_resnet("resnet50", weights="random")
check_last_block(resnet50, "layer4.2.conv3")               # replace with your answer

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
check_last_block(resnet50, "layer4.2")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 · A new measurement: how much does retraining move one setting?** The margin
# of section 2 summarises all settings. Measure it for one: the mean energy of the setting
# `setting(layer="layer4.1")` (the trained full model's last block) for **each** training
# seed, as a list in the order of `ev.seeds`. `ev.get(s, "energy")` has shape (seeds, pairs).
# Then compare its spread with the margin printed in section 2.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
per_seed_energy = [0.2, 0.2, 0.2]      # replace with your measurement
check_seed_means(per_seed_energy, ev, setting(layer="layer4.1"))

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
per_seed_energy = ev.get(setting(layer="layer4.1"), "energy").double().nanmean(dim=1).tolist()
check_seed_means(per_seed_energy, ev, setting(layer="layer4.1"))
