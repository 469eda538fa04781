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
# # 04 · Beyond Grad-CAM: other maps, pixel attributions, sanity checks
#
# *Part 4 of the course "Which layer of a ResNet can Grad-CAM explain?" · about 80 minutes (reading, running the cells, the questions and the exercises).*
#
# Notebooks 01 to 03 changed the layer and the model and kept the method. Here we keep the
# full ResNet and change the **method**: five other CAM rules, a gradient-free one, and two
# pixel attributions. Then we ask whether the maps depend on the model at all.
#
# **After this notebook you can**
# 1. write HiResCAM, Grad-CAM++, XGrad-CAM, LayerCAM and Eigen-CAM in a line or two of
#    tensor code each, and check them against `gradcam_edu.cams`;
# 2. compare every method layer by layer on a figure and on the scoreboard, and test
#    LayerCAM's claim that it stays useful in shallow layers;
# 3. run Score-CAM, SmoothGrad and Integrated Gradients, and check IG's completeness;
# 4. run the cascading randomisation sanity check and read what it says.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch

from gradcam_edu import attributions, cams, metrics, recorded, sanity, viz, weights
from gradcam_edu.evidence import load_evidence
from gradcam_edu.literature import randomisation_rows
from gradcam_edu.capture import capture
from gradcam_edu.exercises.measure import check_map_difference
from gradcam_edu.exercises.predict import layercam_question, reveal
from gradcam_edu.scoreboard import scoreboard
from gradcam_edu.shapes import CLASS_NAMES, shapes_sample

torch.manual_seed(0)
torch.set_num_threads(1)   # tiny models; one thread gives the same numbers on every machine
plt.rcParams.update({"figure.dpi": 90, "axes.titlesize": 10})

model = weights.load_model("resnet18-shapes")
N_IMAGES = 64
images, masks, classes = shapes_sample(N_IMAGES, split="test")
first = [c[0] for c in classes]            # one target class per image: its first object

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# Figure helper (plotting only): images with their mask outline, pixel attributions (magma)
# and a Grad-CAM map (viz.HEAT_CMAP), one row per image, one colour bar per kind of map.
def show_attributions(x, masks_, labels, panels, cam):
    n, k = x.shape[0], len(panels)
    fig, axes = plt.subplots(n, k + 2, figsize=(2.6 * (k + 2), 2.7 * n), squeeze=False)
    for r in range(n):
        axes[r, 0].imshow(viz.to_numpy_image(x[r]))
        axes[r, 0].set_ylabel(labels[r])
        for c, (name, heat) in enumerate([*panels.items(), ("Grad-CAM layer4.1", cam)], 1):
            axes[r, c].imshow(heat[r], cmap="magma" if c <= k else viz.HEAT_CMAP, vmin=0, vmax=1)
            axes[0, c].set_title(name)
        for ax in axes[r]:
            ax.contour(masks_[r].numpy(), levels=[0.5], colors="white", linewidths=0.8)
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_title("image (white: mask)")
    fig.colorbar(plt.cm.ScalarMappable(cmap="magma"), ax=axes[:, 1:k + 1].ravel().tolist(),
                 shrink=0.8, label="|attribution| / 99th percentile")
    fig.colorbar(plt.cm.ScalarMappable(cmap=viz.HEAT_CMAP), ax=axes[:, k + 1].tolist(), shrink=0.8,
                 label="Grad-CAM value")
    fig.suptitle("Pixel attributions (|value| summed over colour channels) and Grad-CAM")
    plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · The CAM family in plain tensor code
#
# Every CAM rule below is a function of the same two tensors of one layer: the activations
# **A** and the gradient **G** $= \partial y^c / \partial A$, both `(N, C, h, w)`. They differ
# only in how they weight the channels, or whether they weight each position separately:
#
# | method | map before the ReLU |
# |---|---|
# | Grad-CAM | $\sum_k \bar G_k\, A_k$, with $\bar G_k = \frac{1}{hw}\sum_{i,j} G_k(i,j)$ |
# | Grad-CAM++ | $\sum_k w_k A_k$, with $w_k = \sum_{i,j} \alpha_{ij}\,\mathrm{relu}(G_k(i,j))$ (section 4b) |
# | HiResCAM | $\sum_k G_k \odot A_k$ |
# | LayerCAM | $\sum_k \mathrm{relu}(G_k) \odot A_k$ |
# | XGrad-CAM | $\sum_k \Big(\sum_{i,j} G_k(i,j) \frac{A_k(i,j)}{\sum_{a,b} A_k(a,b)}\Big) A_k$ |
# | Eigen-CAM | the projection of $A$ on its first principal component (no $G$) |
#
# Papers: the table in `gradcam_edu/cams.py`. We capture `layer3.1` once and write each rule.

# %% slideshow={"slide_type": "subslide"}
with capture(model, ["layer3.1"]) as cap:
    cap.forward(images[:4])
    cap.backward(first[:4])
    A, G = cap.activations["layer3.1"].detach(), cap.gradients["layer3.1"]

by_hand = {
    # Grad-CAM: one weight per channel, the mean gradient
    "gradcam": (G.mean(dim=(2, 3), keepdim=True) * A).sum(1),
    # HiResCAM: gradient times activation at every position (no averaging)
    "hirescam": (G * A).sum(1),
    # LayerCAM: like HiResCAM, but only positive gradients count
    "layercam": (G.clamp(min=0) * A).sum(1),
    # XGrad-CAM: gradients weighted by each position's share of the channel's activation
    "xgradcam": ((G * A / A.sum((2, 3), keepdim=True).clamp(min=1e-7)).sum((2, 3), keepdim=True)
                 * A).sum(1),
}

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
# Grad-CAM++: position weights a = G^2 / (2 G^2 + sum(A) G^3), on positive gradients only
g2, sum_A = G.double() ** 2, A.double().sum((2, 3), keepdim=True)
a = torch.where(G != 0, g2 / (2 * g2 + sum_A * g2 * G + 1e-6), torch.zeros_like(g2))
by_hand["gradcam++"] = ((a * G.clamp(min=0)).sum((2, 3), keepdim=True) * A).sum(1).float()
# Eigen-CAM: project each position's channel vector on the first principal component
X = A.flatten(2).transpose(1, 2).double()                   # (N, positions, C)
X = X - X.mean(1, keepdim=True)
pc1 = torch.linalg.svd(X, full_matrices=False).Vh[:, 0]     # (N, C)
proj = torch.einsum("npc,nc->np", X, pc1).reshape(A.shape[0], *A.shape[-2:])
sign = torch.where(proj.amax((1, 2)).abs() >= proj.amin((1, 2)).abs(), 1.0, -1.0)
by_hand["eigencam"] = (proj * sign[:, None, None]).float()   # the sign of a PC is arbitrary

for name, raw in by_hand.items():
    packaged = cams.raw_map(name, A, G)
    ok = torch.allclose(raw, packaged, atol=1e-5 * packaged.abs().max().item())
    print(f"{cams.METHOD_TITLES[name]:<11} by hand == cams.raw_map: {ok}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Key sentence.** Grad-CAM and XGrad-CAM give each channel *one* weight; HiResCAM and
# LayerCAM keep the gradient *at each position*; Eigen-CAM ignores the gradient, and with
# it the class. At the last block (`layer4.1`) the gradient is constant over positions, so
# Grad-CAM, HiResCAM and XGrad-CAM make the same map there; they part ways in earlier layers.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · Six methods, five layers, one image
#
# One capture gives every layer's A and G; `cams.explain` turns them into displayed maps
# (ReLU, min-max, upsampling) for every method.

# %% slideshow={"slide_type": "subslide"}
LAYERS = ["conv1", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
METHODS = list(cams.GRADIENT_METHODS)
i0 = next(i for i in range(N_IMAGES) if len(classes[i]) == 1)
maps = cams.explain(model, images[i0:i0 + 1], LAYERS, first[i0], methods=METHODS)
for group, title in ((["gradcam", "gradcam++", "xgradcam"], "one weight per channel"),
                     (["hirescam", "layercam", "eigencam"], "a weight per position, or none")):
    grid = {cams.METHOD_TITLES[m]: {layer: maps[layer][m][0] for layer in LAYERS}
            for m in group}
    fig = viz.plot_grid(images[i0], grid, cell_size=2.0,
                        title=f"test {i0}, class '{CLASS_NAMES[first[i0]]}': methods (rows) x "
                              f"layers (columns), {title}")
    plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# At `conv1` the gradient-per-position methods (HiResCAM, LayerCAM) show a dotted grid: the
# max-pool after the stem passes gradient to at most one `conv1` position in four (notebook
# 02's grid effect). A figure shows one image; the scoreboard below measures all of them.

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Predict, then check** (before you scroll on: later cells print the answer). LayerCAM's authors say it gives meaningful maps in shallow layers,
# where Grad-CAM's do not, and notebook 02 found it ahead of Grad-CAM at `conv1`. What about
# `layer3.1`, halfway up: will LayerCAM put more, as much, or less of its map on the object
# than Grad-CAM? Commit (set `my_prediction`), then run the cell: it measures on
# the shipped evidence (3 trained models, 128 held-out images); the scoreboard below then
# shows every layer.

# %% slideshow={"slide_type": "fragment"}
my_prediction = None      # your prediction: "higher", "about the same" or "lower"
reveal(my_prediction, layercam_question())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · The scoreboard, every method at every layer
#
# Energy (share of the map's mass on the object) and pointing within 15 px, over all
# (image, class) pairs, beside the layer's resolution ceiling and the trivial baselines.

# %% slideshow={"slide_type": "subslide"}
board = scoreboard(model, images, masks, classes, LAYERS, methods=METHODS, n_boot=1000)
rows = {(r["layer"], r["method"]): r for r in board.rows}

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    for metric, label in (("energy", "energy"), ("pointing_tol", "pointing within 15 px")):
        print(f"{label}: mean over {len(board.image_index)} pairs from {N_IMAGES} images")
        print(f"{'layer':<16}{'grid':>7}" + "".join(f"{cams.METHOD_TITLES[m]:>11}" for m in METHODS)
              + f"{'ceiling':>9}")
        for layer in LAYERS:
            r0 = rows[(layer, METHODS[0])]
            key = "ceiling_energy" if metric == "energy" else "ceiling_pointing_tol"
            print(f"{layer:<16}{r0['grid']:>7}"
                  + "".join(f"{rows[(layer, m)][metric]:>11.2f}" for m in METHODS)
                  + f"{r0[key]:>9.2f}")
    base = {r["method"]: r for r in board.rows if r["layer"] == "(baseline)"}
    print(f"baselines: uniform map energy {base['uniform']['energy']:.2f}, centre map energy "
          f"{base['centre']['energy']:.2f}, centre pointing within 15 px "
          f"{base['centre']['pointing_tol']:.2f}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("04 methods x layers", table.text, tol=0.02)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### LayerCAM's claim: meaningful maps in shallow layers
#
# LayerCAM was designed so that shallow layers give useful maps, where Grad-CAM's averaged
# weights fail. We test it as a paired difference, LayerCAM minus Grad-CAM, per layer.

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    print(f"{'layer':<16}{'LayerCAM':>9}{'Grad-CAM':>9}   LayerCAM - Grad-CAM, energy [95% CI]")
    for layer in LAYERS:
        d = board.compare((layer, "layercam"), (layer, "gradcam"), "energy")
        print(f"{layer:<16}{rows[(layer, 'layercam')]['energy']:>9.2f}"
              f"{rows[(layer, 'gradcam')]['energy']:>9.2f}   "
              f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("04 layercam - gradcam", table.text, tol=0.01)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "fragment"}
# Read each row twice: against Grad-CAM (the last column) and against the baselines and the
# ceiling printed with the scoreboard. In the three shallow layers LayerCAM's interval lies
# above zero, and from `layer3.1` on below it; HiResCAM, which also keeps the gradient per
# position, scores close to LayerCAM in the shallow rows. Even there both stay far below
# the ceiling of their grid. Section 6 asks what these shallow maps depend on.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · Score-CAM: no gradient at all
#
# Score-CAM weights channel $k$ by the class score of the image **masked by $A_k$** (upsampled
# and scaled to [0, 1]), softmaxed over channels: one forward per channel, batched. We keep
# only the channels with the largest mean activation (`max_channels`) and a few images.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    few = list(range(4))
    x_few, t_few = images[few], [first[i] for i in few]
    m_few = torch.stack([masks[i][0] for i in few])
    lines = [f"{'layer':<10}{'Score-CAM':>10}{'Grad-CAM':>10}{'LayerCAM':>10}   energy on "
             f"{len(few)} images (first object each); Score-CAM with max_channels=24"]
    score_maps = {}
    for layer in ("layer3.1", "layer4.1"):
        with capture(model, [layer]) as cap:
            cap.forward(x_few)
            cap.backward(t_few)
            A_l, G_l = cap.activations[layer].detach(), cap.gradients[layer]
        score_maps[layer] = cams.finalize(cams.score_cam(model, x_few, A_l, t_few, max_channels=24),
                                          (224, 224))
        e = {m: metrics.energy_pointing_game(cams.finalize(cams.raw_map(m, A_l, G_l), (224, 224)),
                                             m_few).mean().item() for m in ("gradcam", "layercam")}
        e_score = metrics.energy_pointing_game(score_maps[layer], m_few).mean().item()
        lines.append(f"{layer:<10}{e_score:>10.2f}{e['gradcam']:>10.2f}{e['layercam']:>10.2f}")
    print("\n".join(lines))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("04 score-cam", table.text, tol=0.02)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "fragment"}
# Four images make a demonstration, not a measurement: Score-CAM costs one forward per
# channel per image (here 24 per image and layer). The next section measures it on 16
# images with every channel, and asks why it scores low.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4b · Why Grad-CAM++ and Score-CAM score low: weights that cannot be negative
#
# In the scoreboard Grad-CAM++ is below Grad-CAM at `layer3.1` and at the shallow layers,
# and in the 4-image table of section 4 Score-CAM is below Grad-CAM at both layers. Both are weighted sums of the same channels A_k, so the
# difference is in the weights w_k.
#
# **Grad-CAM++, a derivation.** Its closed form (for an exponential score, as in the paper
# and in grad-cam) is $\alpha_{ij} = g_{ij}^2 / (2 g_{ij}^2 + S g_{ij}^3)$ with
# $S = \sum_{ab} A_{ab}$ (the channel's total), so for $g \neq 0$,
# $\alpha_{ij} = 1 / (2 + S g_{ij})$, and
#
# $$w_k = \sum_{ij} \alpha_{ij}\,\mathrm{relu}(g_{ij}) = \sum_{ij:\,g_{ij}>0} \frac{g_{ij}}{2 + S g_{ij}}.$$
#
# After a ReLU, S ≥ 0, so every term is positive: **a Grad-CAM++ weight is never negative**,
# whereas Grad-CAM's w_k = mean(g) is negative for channels whose activation lowers the
# class score (the background, the other object). When |S g| ≪ 2 the weight is about
# ½ Σ relu(g): the positive part of the gradient only. Its denominator can come near zero
# only where S g ≈ -2, which needs S < 0: outputs before a ReLU (`conv1`, a block's `conv2`).
#
# The cell measures each step on 16 images (first object each): the share of channels
# Grad-CAM weights negatively, the median |S g| where g > 0, the share of near-zero
# denominators (|2 + S g| < 0.2), and the energy of Grad-CAM, of Grad-CAM with its negative
# weights set to 0, of ½ Σ relu(g) as weights, and of Grad-CAM++.

# %% slideshow={"slide_type": "subslide"}
def energy_of(raw, m):
    """Mean energy of raw maps (N, h, w) as displayed (ReLU, min-max, upsampled)."""
    return metrics.energy_pointing_game(cams.finalize(raw, (224, 224)), m).mean().item()


def channel_sum(w, A):
    """sum_k w_k A_k: the map of channel weights w (N, K) on activations A (N, K, h, w)."""
    return torch.einsum("nk,nkhw->nhw", w, A)


x16, t16 = images[:16], first[:16]
m16 = torch.stack([masks[i][0] for i in range(16)])
with capture(model, LAYERS) as cap:
    cap.forward(x16)
    cap.backward(t16)
    AG = {la: (cap.activations[la].detach().double(), cap.gradients[la].double())
          for la in LAYERS}

with recorded.tee() as table:   # prints, and keeps the text for the check below
    print(f"{'layer':<10}{'w<0':>6}{'|Sg|':>7}{'2+Sg~0':>8}{'Grad-CAM':>10}{'w>=0':>7}"
          f"{'½Σrelu(g)':>10}{'Grad-CAM++':>12}")
    for la, (A, G) in AG.items():
        S = A.sum(dim=(2, 3), keepdim=True)
        positive = G > 0
        Sg = (S * G)[positive]
        w_gc = G.mean(dim=(2, 3))
        row = [(w_gc < 0).double().mean(), Sg.abs().median(), ((2 + Sg).abs() < 0.2).double().mean()]
        e = [energy_of(channel_sum(w, A).float(), m16)
             for w in (w_gc, w_gc.clamp(min=0), G.clamp(min=0).sum(dim=(2, 3)) / 2)]
        e.append(energy_of(cams.raw_map("gradcam++", A.float(), G.float()), m16))
        print(f"{la:<10}{row[0]:>6.2f}{row[1]:>7.2f}{row[2]:>8.3f}{e[0]:>10.2f}{e[1]:>7.2f}"
              f"{e[2]:>10.2f}{e[3]:>12.2f}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("04 grad-cam++ weights", table.text, tol=0.02)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Reading it.** At `layer3.1` Grad-CAM weights 58% of the channels negatively. Setting
# those weights to 0, and nothing else, drops its energy from 0.54 to 0.27, and ½ Σ relu(g)
# as weights (0.24) gives what Grad-CAM++ gives (0.24): there |S g| is small (median 0.16),
# so Grad-CAM++ is the sum of the positive gradients, and what it lacks are the channels a
# map should *subtract* (the other object, the background). At `layer4.1` the same steps
# cost less (0.22, 0.19, 0.19, 0.20). At `conv1`, an output before a ReLU (so S can be
# negative), |S g| is large (median 10.3) and near-zero denominators do occur, but
# on 1.2% of the positive-gradient positions only, and nowhere else; clipping Grad-CAM's
# weights costs nothing there (0.12), while Grad-CAM++ scores like ½ Σ relu(g) (both 0.05):
# ignoring the negative gradients *inside* each channel is what costs. So near-zero
# denominators are not why Grad-CAM++ scores low on this model; weights that cannot go
# negative are. (16 images of one model: a mechanism shown, not an effect with intervals.)
#
# **Score-CAM.** Its weights are a softmax over the masked-image scores of the channels,
# positive too. The cell scores Score-CAM with every channel on the same 16 images, then
# changes one thing, the weighting: the softmax (Score-CAM), the scores shifted to start at
# 0 (linear, still ≥ 0), and the scores minus their mean (signed). It also prints the
# softmax's effective number of channels, 1 / Σ w², out of K.

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    print(f"{'layer':<10}{'K':>5}{'effective':>11}{'softmax':>9}{'linear':>8}{'signed':>8}"
          f"{'Grad-CAM':>10}   energy, 16 images")
    for la in ("layer3.1", "layer4.1"):
        A, G = (t.float() for t in AG[la])
        s, chans = cams.score_cam_scores(model, x16, A, t16)   # every channel, in order
        soft = s.softmax(dim=1)
        weightings = (soft, s - s.min(dim=1, keepdim=True).values, s - s.mean(dim=1, keepdim=True))
        e = [energy_of(channel_sum(w, chans), m16) for w in weightings]
        print(f"{la:<10}{A.shape[1]:>5}{(1 / soft.pow(2).sum(1)).mean():>11.1f}{e[0]:>9.2f}"
              f"{e[1]:>8.2f}{e[2]:>8.2f}{energy_of(cams.raw_map('gradcam', A, G), m16):>10.2f}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("04 score-cam weights", table.text, tol=0.02)   # the same on every CPU

# %% [markdown] slideshow={"slide_type": "fragment"}
# At `layer3.1` the softmax is close to winner-take-all: 5.5 effective channels of 64. But
# that is not why Score-CAM scores low here: linear weights, still non-negative, give about
# the same energy (0.21 against 0.23), while signed weights (the scores minus their mean, so
# that some channels are subtracted) raise it to 0.40, toward Grad-CAM's 0.54. As for
# Grad-CAM++, what is missing is the channels a map should subtract. At `layer4.1` the
# weightings differ little (0.19 to 0.21, Grad-CAM 0.22).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · Pixel attributions: SmoothGrad and Integrated Gradients
#
# These explain the class score with respect to the **input pixels**, not a layer.
# **SmoothGrad** averages the input gradient over noisy copies of the image.
# **Integrated Gradients** (IG) integrates the gradient along the straight path from a
# baseline x' (here black) to the image x:
# `IG = (x - x') * integral over a in [0, 1] of dF(x' + a (x - x'))/dx`.
# Its attributions must add up to F(x) - F(x') (**completeness**). The integral is a sum
# over steps; the completeness error tells whether we used enough of them.
#
# By hand: the gradient at every point of a fine grid on the path, then the trapezoid rule
# on that grid and on coarser grids taken from it (every other point, every fourth, ...).

# %% slideshow={"slide_type": "subslide"}
x2, t2 = images[:2], first[:2]
baseline = torch.zeros_like(x2)                             # x' = a black image
K, STEPS = 256, (8, 16, 32, 64, 128, 256)                   # finest grid, grids compared
alphas = torch.linspace(0, 1, K + 1)


def trapezoid_weight(k, steps):
    """Weight of path point k (of 0..K) in the trapezoid rule on `steps` intervals."""
    if k % (K // steps):
        return 0.0                                          # not on this coarser grid
    return (0.5 if k in (0, K) else 1.0) / steps

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    sums = {s_: torch.zeros_like(x2) for s_ in STEPS}           # sum_k w_k dF/dx(point k)
    for ks in torch.arange(K + 1).split(43):
        path = baseline[:, None] + alphas[ks][None, :, None, None, None] * (x2 - baseline)[:, None]
        g = attributions.vanilla_gradient(model, path.flatten(0, 1), [t for t in t2 for _ in ks])
        g = g.unflatten(0, (len(t2), len(ks)))
        for j, k in enumerate(ks.tolist()):
            for s_ in STEPS:
                sums[s_] += trapezoid_weight(k, s_) * g[:, j]
    grad_at_x = g[:, -1]                                         # the last point is x itself
    ig = {s_: (x2 - baseline) * sums[s_] for s_ in STEPS}       # IG for every grid
    with torch.no_grad():
        delta = (model(x2) - model(baseline)).gather(1, torch.tensor(t2)[:, None])[:, 0]
    print("F(x) - F(black):", "  ".join(f"{v:.3f}" for v in delta.tolist()))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("04 IG delta", table.text, tol=0.01)   # the same on every CPU

# %% slideshow={"slide_type": "subslide"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    packaged = attributions.integrated_gradients(model, x2, t2, baseline=0.0, steps=16)
    print("by hand == attributions.integrated_gradients (16 steps):",
          torch.allclose(ig[16], packaged.attributions, atol=1e-5))
    errors = {s_: (ig[s_].sum(dim=(1, 2, 3)) - delta).abs() / delta.abs() for s_ in STEPS}
    print(f"{'steps':>6}  relative completeness error |sum(IG) - ΔF| / |ΔF|, per image")
    for s_ in STEPS:
        print(f"{s_:>6}  " + "  ".join(f"{v:.3f}" for v in errors[s_].tolist()))
    settled = [s_ for s_ in STEPS if all(errors[f].max() < 0.01 for f in STEPS if f >= s_)]
    print("fewest steps from which every finer grid keeps every error below 1%:",
          settled[0] if settled else f"none up to {K}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("04 IG completeness", table.text, tol=0.01)   # the same on every CPU

# %% slideshow={"slide_type": "subslide"}
fig, ax = plt.subplots(figsize=(5.5, 3.4))
for j in range(len(t2)):
    ax.plot(STEPS, [errors[s_][j].item() for s_ in STEPS], "o-",
            label=f"test {j}: {CLASS_NAMES[t2[j]]}")
ax.axhline(0.01, color="grey", ls="--", label="1% target")
ax.set_xscale("log", base=2), ax.set_yscale("log")
ax.set_xticks(STEPS, [str(s_) for s_ in STEPS])
ax.set_xlabel("integration steps (trapezoid rule)")
ax.set_ylabel("|sum of attributions - ΔF| / |ΔF|")
ax.set_title("Integrated Gradients: completeness error against steps")
ax.legend(fontsize=8)
plt.show()

# %% [markdown] slideshow={"slide_type": "fragment"}
# The error does not fall smoothly. A ReLU network's gradient jumps along the path, so a
# coarse grid can be right by luck (test 1: 0.016 at 16 steps, then 0.044 at 32) while a
# finer one lands on jumps it had skipped; test 0 hovers near 1% at 64 and 128 steps (0.010,
# 0.008), and every error stays below 1% only from 128 steps on. One good-looking
# number proves little: check completeness on a sequence of grids for the images you
# explain, and report the error with the attributions.

# %% slideshow={"slide_type": "subslide"}
smooth = attributions.smooth_grad(model, x2, t2, n_samples=16, noise=0.15)
gc = cams.explain(model, x2, ["layer4.1"], t2)["layer4.1"]["gradcam"]


def display(attr):
    """|attribution| summed over colours, divided by its 99th percentile, clipped at 1."""
    heat = attr.abs().sum(dim=1)
    top = heat.flatten(1).quantile(0.99, dim=1).clamp(min=1e-12)
    return (heat / top[:, None, None]).clamp(max=1)


panels = {"gradient": display(grad_at_x), "SmoothGrad": display(smooth),
          f"IG ({K} steps)": display(ig[K])}
show_attributions(x2, [masks[i][0] for i in range(2)],
                  [f"test {i}: {CLASS_NAMES[t2[i]]}" for i in range(2)], panels, gc)

# %% [markdown] slideshow={"slide_type": "subslide"}
# Pixel attributions have the image's resolution, so they can trace edges; they say nothing
# about which *layer* represents the object. They answer another question than a CAM.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · Sanity check: do the maps depend on the model?
#
# Adebayo et al. (NeurIPS 2018) re-initialise the model's layers from the top (`fc`, then
# `layer4`, ...) one after another and compare each new map with the trained model's map
# (Spearman rank correlation). A map that explains the model must change as the model is
# destroyed; a map that stays the same was showing the image, not the model. They found that
# the gradient and Grad-CAM pass, and that **Guided Backprop** fails: it stays similar to
# the trained map with every layer random. Guided Backprop is the input gradient through
# ReLUs that pass back only positive gradients (`attributions.guided_backprop`), here the
# control that should fail.
#
# `sanity.randomisation_test` runs it on a copy of the model. First on 4 images, live:

# %% slideshow={"slide_type": "subslide"}
demo = sanity.randomisation_test(model, images[:4], first[:4], "layer4.1",
                                 stages=["fc", "layer4", "conv1"], n_boot=200)
print(sanity.format_randomisation(demo))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Four images are a demonstration. The measurement: 32 test images for each of the 3
# independently trained models, shipped in the evidence file (`python -m
# gradcam_edu.evidence`); intervals over seeds and images.

# %% slideshow={"slide_type": "fragment"}
with recorded.tee() as table:   # prints, and keeps the text for the check below
    sanity_rows = randomisation_rows(load_evidence())
    print(sanity.format_randomisation(sanity_rows))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
# NBVAL_CHECK_OUTPUT
recorded.check("04 sanity check", table.text, tol=0.002)   # stored scores

# %% slideshow={"slide_type": "subslide"}
stages = list(dict.fromkeys(r["stage"] for r in sanity_rows))
fig, ax = plt.subplots(figsize=(8, 3.6))
for m in dict.fromkeys(r["method"] for r in sanity_rows):
    rs = [r for r in sanity_rows if r["method"] == m]
    ax.errorbar(range(len(rs)), [r["mean"] for r in rs], capsize=3, marker="o", label=m,
                yerr=[[r["mean"] - r["low"] for r in rs], [r["high"] - r["mean"] for r in rs]])
ax.axhline(0, color="grey", lw=0.8)
ax.set_xticks(range(len(stages)), stages, rotation=45, ha="right")
ax.set_xlabel("re-initialised from fc down to this stage (cumulative)")
ax.set_ylabel("Spearman ρ with the trained map")
ax.set_title("Cascading randomisation (3 seeds x 32 images, 95% intervals)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# Read the rows top down. Grad-CAM at `layer4.1` loses its correlation as soon as `fc` is
# random: its map is the head's map. The gradient falls more slowly. Guided Backprop stays
# highly correlated while only the top of the network (`fc`, `layer4`) is random, as Adebayo
# et al. found: it reconstructs the image's edges more than it explains the decision. With
# every layer random it decorrelates too, and there we **differ** from Adebayo et al., who
# saw it stay similar to the end on photographs. We have not measured why. One possible
# reason: our images are flat colours, so most pixels carry near-zero attribution, and the
# rank order of those small values (which a Spearman correlation counts as much as the
# edges) comes from the random filters. Notebook 05 reads the rule at the top of the
# network, where the finding was made.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7 · Your turn: the explorer with every method
#
# The static figure shows where the explorer starts: `layer2.1`, the first images, each
# image's first object, every gradient method. In the live explorer below, switch the
# **method** (Score-CAM included, computed on demand) and slide through the layers; look for
# the layers where the methods agree and where they part.

# %% slideshow={"slide_type": "subslide"}
start = cams.explain(model, images[:2], ["layer2.1"], first[:2], methods=METHODS)["layer2.1"]
fig, axes = plt.subplots(2, len(METHODS), figsize=(2.1 * len(METHODS) + 1, 4.8),
                         layout="constrained")
for r in range(2):
    for c, m in enumerate(METHODS):
        axes[r, c].imshow(viz.overlay(images[r], start[m][r]))
        axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
        axes[0, c].set_title(cams.METHOD_TITLES[m])
    axes[r, 0].set_ylabel(f"test {r}: {CLASS_NAMES[first[r]]}")
fig.colorbar(plt.cm.ScalarMappable(cmap=viz.HEAT_CMAP), ax=axes.ravel().tolist(), shrink=0.8,
             label="map value (0 to 1)")
fig.suptitle("layer2.1, every gradient method: the explorer's starting point")
plt.show()

# %% slideshow={"slide_type": "subslide"}
from gradcam_edu.explorer import Explorer

ex = Explorer(model, images[:12], class_names=CLASS_NAMES, layer="layer2.1", method="layercam",
              methods=[*METHODS, "scorecam"])
ex

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * The CAM rules differ only in how A and G are combined: one weight per channel (Grad-CAM,
#   Grad-CAM++, XGrad-CAM), a weight per position (HiResCAM, LayerCAM), or no gradient at all
#   (Eigen-CAM, Score-CAM). At the last block several of them coincide.
# * Whether a method "works in shallow layers" is a measurement: a paired difference against
#   Grad-CAM **and** a comparison with the baselines and the resolution ceiling.
# * Integrated Gradients comes with its own check: the attributions must add up to
#   F(x) - F(x'). Add steps until the completeness error is small; report it.
# * A sanity check asks whether a map depends on the model. A map that survives the
#   re-initialisation of the layers it claims to explain explains something else.
#
# Next, notebook 05 puts the post's three claims to the test, and shows how to run all of
# this on your own model and image.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Checkers come from `gradcam_edu.exercises`. The solutions are in the collapsed cells
# (click the three dots to open one); they are not executed in the committed notebook: try first.
#
# The first exercises practise what the notebook showed, as warm-ups; the last one asks for a
# **new measurement**, a number no cell above prints.
#
# **Exercise 1 · LayerCAM by hand.** Write `my_layer_cam(A, G)` returning LayerCAM's raw map
# `(N, h, w)`, before the final ReLU and scaling.

# %% tags=["exercise"] slideshow={"slide_type": "subslide"}
from gradcam_edu.exercises.nb04 import check_completeness_error, check_head_blind, check_layer_cam


def my_layer_cam(A, G):
    return (G * A).sum(dim=1)                     # replace with your answer


check_layer_cam(my_layer_cam)

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
def my_layer_cam(A, G):
    return (G.clamp(min=0) * A).sum(dim=1)


check_layer_cam(my_layer_cam)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2 · The completeness check.** Write `completeness_error(attr, f_x, f_base)`:
# the relative error `|sum of attributions - (F(x) - F(x'))| / |F(x) - F(x')|`, one value
# per image, for attributions `(N, C, H, W)` and scores `(N,)`.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
def completeness_error(attr, f_x, f_base):
    return attr.sum(dim=(1, 2, 3)) - (f_x - f_base)          # replace with your answer


check_completeness_error(completeness_error)

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
def completeness_error(attr, f_x, f_base):
    delta = f_x - f_base
    return (attr.sum(dim=(1, 2, 3)) - delta).abs() / delta.abs()


check_completeness_error(completeness_error)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3 · Blind to the head.** Which of the six methods of section 1 gives *exactly*
# the same map at `layer4.1` whatever the weights of `fc` are? Answer with its name.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
check_head_blind("gradcam")                       # replace with your answer

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
check_head_blind("eigencam")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 · A new measurement: how far apart are two methods?** Section 1 says Grad-CAM
# and HiResCAM make the same map at the last block and part ways earlier. By how much, at
# `layer3.1`? Measure the mean absolute difference between their displayed maps (values in
# [0, 1], at image size) over the first 16 images, each for its first class (`first[:16]`).
# Then guess, and measure, the same at `layer4.1`.

# %% tags=["exercise"] slideshow={"slide_type": "fragment"}
mean_gap = 0.0            # replace with your measurement
check_map_difference(mean_gap, model, images[:16], first[:16], "layer3.1")

# %% tags=["solution"] jupyter={"source_hidden": true} slideshow={"slide_type": "skip"}
pair = cams.explain(model, images[:16], ["layer3.1"], first[:16],
                    methods=("gradcam", "hirescam"))["layer3.1"]
mean_gap = (pair["gradcam"] - pair["hirescam"]).abs().mean()
check_map_difference(mean_gap, model, images[:16], first[:16], "layer3.1")
