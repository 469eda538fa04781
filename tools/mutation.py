"""Planted bugs, one at a time: do the tests catch them?

    .venv/bin/python tools/mutation.py                 # every mutant (about 10 minutes)
    .venv/bin/python tools/mutation.py --list          # the mutants, checked, nothing run
    .venv/bin/python tools/mutation.py --only met-tie-ignored sb-compare-other

Each mutant is one exact text replacement in one module of ``gradcam_edu/`` that must match
exactly once in the current source (the script stops, naming the mutant, when a replacement no
longer matches: update it with the code). The repository's package, tests and data
(``git ls-files`` plus untracked files that git does not ignore) are copied once to a snapshot
(so that edits made during the run change nothing); for each mutant the snapshot is copied to
a fresh temporary folder, the one replacement is applied to that COPY (the working tree is
never written), and the module's test files run there with this virtualenv's python
(``-x -q -p no:cacheprovider``) under ``PYTHONPATH=<copy>`` and ``cwd=<copy>``, one process at
a time, with a per-mutant timeout. Results: ``killed`` (a test failed or errored),
``survived`` (every test passed), ``timeout`` (counted as killed: the tests did not pass).

Checks that the copy is what the tests import: before the mutants, the copy's
``gradcam_edu.__file__`` must lie in the copy, and the unmutated copy must pass every test file
the selected mutants use (otherwise every mutant would look killed); the ``canary`` mutant
(``pointing_game`` raises) must be killed, or the run stops.

Mutants judged EQUIVALENT (no observable behaviour change; the reason is in the table) are run
too, but do not count in the score; one that is killed is flagged, since it was not equivalent.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "gradcam_edu"
COPIED = (f"{PACKAGE}/", "tests/", "data/", "pyproject.toml")
"""What a mutant's copy holds: the package, the tests, the shipped data, pytest's settings."""

# the test files that exercise each module (a missing file is reported, then skipped)
TESTS: dict[str, list[str]] = {
    "capture.py": ["tests/test_planted_capture.py", "tests/test_capture.py"],
    "inputs.py": ["tests/test_capture.py", "tests/test_planted_capture.py"],
    "targets.py": ["tests/test_targets.py", "tests/test_capture.py"],
    "cams.py": ["tests/test_planted_cams.py", "tests/test_cams.py"],
    "attributions.py": ["tests/test_planted_attributions.py", "tests/test_attributions.py"],
    "metrics.py": ["tests/test_planted_metrics.py", "tests/test_metrics.py",
                   "tests/test_scoreboard.py"],
    "faithfulness.py": ["tests/test_planted_metrics.py", "tests/test_faithfulness.py",
                        "tests/test_metrics.py"],
    "sanity.py": ["tests/test_sanity.py", "tests/test_planted_metrics.py", "tests/test_metrics.py"],
    "scoreboard.py": ["tests/test_scoreboard.py", "tests/test_metrics.py"],
    "gradflow.py": ["tests/test_planted_gradflow.py", "tests/test_gradflow.py"],
    "truncate.py": ["tests/test_planted_truncate.py", "tests/test_truncate.py",
                    "tests/test_resnet.py"],
    "probes.py": ["tests/test_planted_truncate.py", "tests/test_truncate.py"],
    "resnet.py": ["tests/test_resnet.py", "tests/test_planted_truncate.py",
                  "tests/test_truncate.py", "tests/test_gradflow.py"],
    "verdict.py": ["tests/test_verdict.py"],
    "claims.py": ["tests/test_claims.py"],
    "session.py": ["tests/test_planted_session.py", "tests/test_explorer.py"],
    "explorer.py": ["tests/test_planted_session.py", "tests/test_explorer.py"],
}


@dataclasses.dataclass(frozen=True)
class Mutant:
    id: str
    module: str          # file name inside gradcam_edu/
    kind: str
    description: str
    old: str
    new: str
    equivalent: str | None = None     # why no behaviour changes (then not scored)
    tests: tuple[str, ...] | None = None

    @property
    def path(self) -> str:
        return f"{PACKAGE}/{self.module}"

    def test_files(self) -> list[str]:
        return list(self.tests) if self.tests is not None else TESTS[self.module]


def M(id, module, kind, description, old, new, equivalent=None, tests=None) -> Mutant:
    return Mutant(id, module, kind, description, old, new, equivalent,
                  tuple(tests) if tests is not None else None)


MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------------ canary (must be killed)
    M("canary", "metrics.py", "canary", "pointing_game raises: proves the copy is imported",
      "    _check_maps_masks(maps, masks)\n    ys, xs = peak_location(maps)\n",
      "    raise RuntimeError('planted canary: the tests import the mutated copy')\n"),
    # ------------------------------------------------------------------ capture.py
    M("cap-no-clone", "capture.py", "in-place safety", "hook passes the recorded tensor on, "
      "not a clone (in-place ReLU / += overwrite it)",
      "            return output.clone()\n", "            return output\n"),
    M("cap-graph", "capture.py", "dropped argument", "backward frees the graph "
      "(retain_graph=False): a second class needs a new forward",
      "grads = torch.autograd.grad(scores.sum(), tensors, retain_graph=True,",
      "grads = torch.autograd.grad(scores.sum(), tensors, retain_graph=False,"),
    M("cap-mode-top", "inputs.py", "state restore", "capture's model_mode restores only the "
      "top module's training flag",
      "saved = [(m, m.training) for m in model.modules()]",
      "saved = [(model, model.training)]"),
    M("cap-call-offby1", "capture.py", "off-by-one", "call index == number of calls accepted "
      "(IndexError instead of the named ValueError)",
      "        if call >= len(runs):\n", "        if call > len(runs):\n"),
    M("cap-order-call", "capture.py", "wrong key", "layer_names orders 'm#k' by the module's "
      "first call, not by call k",
      'return first_run.get(f"{base}#{call or 0}", len(first_run))',
      'return first_run.get(f"{base}#0", len(first_run))'),
    M("cap-release", "capture.py", "detach missing", "release keeps the activations' graph",
      "        self.activations = {n: a.detach() for n, a in self.activations.items()}\n",
      "        self.activations = dict(self.activations)\n"),
    # ------------------------------------------------------------------ targets.py
    M("tgt-repeat", "targets.py", "wrong op", "repeated images get tiled classes "
      "(repeat) instead of repeat_interleave",
      "return classes.repeat_interleave(repeats) if repeats != 1 else classes",
      "return classes.repeat(repeats) if repeats != 1 else classes"),
    M("tgt-range", "targets.py", "off-by-one", "class index == num_classes passes the check",
      "bad = (classes < 0) | (classes >= num_classes)",
      "bad = (classes < 0) | (classes > num_classes)"),
    M("tgt-index", "targets.py", "dropped argument", "select_target ignores the index of the "
      "images taken",
      "        classes = classes[torch.as_tensor(index, dtype=torch.long).cpu()]\n",
      "        classes = classes[:len(torch.as_tensor(index))]\n"),
    # ------------------------------------------------------------------ cams.py
    M("cam-gradcam-sum", "cams.py", "sum vs mean", "Grad-CAM weights summed, not averaged, "
      "over positions",
      "return _weighted_sum(G.mean(dim=(2, 3)), A)",
      "return _weighted_sum(G.sum(dim=(2, 3)), A)"),
    M("cam-pp-g3", "cams.py", "wrong term", "Grad-CAM++ denominator uses G^2 for G^3",
      "alpha = g2 / (2 * g2 + sum_A * g3 + 1e-6)",
      "alpha = g2 / (2 * g2 + sum_A * g2 + 1e-6)"),
    M("cam-pp-relu", "cams.py", "dropped ReLU", "Grad-CAM++ weights use G, not ReLU(G)",
      "weights = (alpha * G64.clamp(min=0)).sum(dim=(2, 3))",
      "weights = (alpha * G64).sum(dim=(2, 3))"),
    M("cam-xgrad-axis", "cams.py", "wrong axis", "XGrad-CAM normalises A over channels, not "
      "positions",
      "    sum_A = A.sum(dim=(2, 3), keepdim=True)\n",
      "    sum_A = A.sum(dim=1, keepdim=True)\n"),
    M("cam-layercam", "cams.py", "ReLU misplaced", "LayerCAM: ReLU of G*A instead of ReLU(G)*A",
      "return (G.clamp(min=0) * A).sum(dim=1)",
      "return (G * A).clamp(min=0).sum(dim=1)"),
    M("cam-eigen-sign", "cams.py", "tie/sign rule reversed", "Eigen-CAM sign flip reversed",
      "flip = proj.min(dim=1).values.abs() > proj.max(dim=1).values.abs()",
      "flip = proj.min(dim=1).values.abs() < proj.max(dim=1).values.abs()"),
    M("cam-eigen-centre", "cams.py", "wrong axis", "Eigen-CAM centres over channels, not "
      "positions",
      "X = X - X.mean(dim=1, keepdim=True)", "X = X - X.mean(dim=2, keepdim=True)"),
    M("cam-normalize-min", "cams.py", "wrong reduction", "min-max uses the batch's minimum, "
      "not each map's",
      "lo = flat.min(dim=1).values[:, None, None]",
      "lo = flat.min().expand(maps.shape[0])[:, None, None]"),
    M("cam-upsample-corners", "cams.py", "wrong flag", "upsample with align_corners=True",
      "                         align_corners=False)[:, 0]",
      "                         align_corners=True)[:, 0]"),
    M("cam-score-topk", "cams.py", "wrong reduction", "Score-CAM max_channels keeps the largest "
      "maximum, not the largest mean",
      "channels = A.mean(dim=(2, 3)).topk(max_channels, dim=1).indices",
      "channels = A.amax(dim=(2, 3)).topk(max_channels, dim=1).indices"),
    M("cam-score-softmax", "cams.py", "wrong axis", "Score-CAM softmax over images, not channels",
      "weights = weights.softmax(dim=1)", "weights = weights.softmax(dim=0)"),
    M("cam-explain-detach", "cams.py", "detach missing", "explain's maps keep the autograd "
      "graph (requires_grad, .numpy() fails)",
      "finalize(raw_map(m, cap.activations[name].detach(),",
      "finalize(raw_map(m, cap.activations[name],"),
    # ------------------------------------------------------------------ attributions.py
    M("att-sg-span", "attributions.py", "dropped term", "SmoothGrad noise scaled by the max, "
      "not the range (max - min)",
      "span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).reshape(n, 1, 1, 1)",
      "span = x.amax(dim=(1, 2, 3)).reshape(n, 1, 1, 1)"),
    M("att-sg-mean", "attributions.py", "wrong divisor", "SmoothGrad divides by the last batch "
      "size, not the number of samples",
      "    return total / n_samples\n", "    return total / k\n"),
    M("att-ig-trapezoid", "attributions.py", "off-by-one weight", "IG trapezoid halves only the "
      "first end point",
      "w[0] = w[-1] = 0.5 / steps", "w[0] = 0.5 / steps"),
    M("att-ig-alphas", "attributions.py", "off-by-one", "IG path has steps points, not steps + 1",
      "alphas = torch.linspace(0, 1, steps + 1,", "alphas = torch.linspace(0, 1, steps,"),
    M("att-ig-delta", "attributions.py", "swapped pair", "IG delta is F(baseline) - F(x)",
      "- target_scores(run_model(model, baseline), target))",
      "- target_scores(run_model(model, x), target) * 0 - target_scores(run_model(model, "
      "baseline), target) * 2 + target_scores(run_model(model, x), target) * 0)"),
    M("att-heatmap", "attributions.py", "abs misplaced", "to_heatmap sums signed channels "
      "before the absolute value",
      "heat = attributions.abs().sum(dim=1)", "heat = attributions.sum(dim=1).abs()"),
    # ------------------------------------------------------------------ metrics.py
    M("met-tie-ignored", "metrics.py", "tolerance ignored", "peak ties need exact equality "
      "(PEAK_TIE ignored)",
      "is_max = flat >= (top - tie * (top - low))[:, None]", "is_max = flat >= top[:, None]"),
    M("met-tie-reversed", "metrics.py", "tie rule reversed", "peak ties go to the pixel "
      "farthest from the centre",
      "torch.where(is_max, dist, torch.full_like(dist, math.inf)).argmin(dim=1)",
      "torch.where(is_max, -dist, torch.full_like(dist, math.inf)).argmin(dim=1)"),
    M("met-peak-axis", "metrics.py", "wrong axis", "peak row/column computed with the height",
      "return idx // w, idx % w", "return idx // h, idx % h"),
    M("met-disc", "metrics.py", "off-by-one", "tolerance disc excludes its boundary",
      "inside = dy ** 2 + dx ** 2 <= radius ** 2", "inside = dy ** 2 + dx ** 2 < radius ** 2"),
    M("met-valid-row", "metrics.py", "off-by-one", "row just below the image counts as valid",
      "valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)",
      "valid = (yy >= 0) & (yy <= h) & (xx >= 0) & (xx < w)",
      equivalent="row h is clamped to row h-1, which is nearer the peak (ys <= h-1), so it is "
                 "inside the disc and already counted: the hit is unchanged"),
    M("met-energy-area", "metrics.py", "wrong reduction", "massless maps get the batch's mean "
      "area, not their own mask's",
      "    area = inside.double().mean(dim=1)\n", "    area = inside.double().mean()\n"),
    M("met-grid-total", "metrics.py", "dropped weight", "energy_at_grid totals the grid map "
      "without the upsampling's weights",
      "total = (pos * total_w).sum(dim=(1, 2))", "total = pos.sum(dim=(1, 2))"),
    M("met-share-mean", "metrics.py", "sum vs mean", "target_share averages instead of summing "
      "the two masses",
      "    on_target = (pos * target_mask.reshape(maps.shape[0], -1)).sum(dim=1)\n"
      "    on_other = (pos * other_mask.reshape(maps.shape[0], -1)).sum(dim=1)\n",
      "    on_target = (pos * target_mask.reshape(maps.shape[0], -1)).mean(dim=1)\n"
      "    on_other = (pos * other_mask.reshape(maps.shape[0], -1)).mean(dim=1)\n",
      equivalent="both masses are divided by the same H*W: their ratio, the score, and the "
                 "both > 0 test are unchanged"),
    M("met-centre", "metrics.py", "off-by-one", "image centre at h/2 instead of (h-1)/2",
      "ys = torch.arange(h, device=device, dtype=torch.float32) - (h - 1) / 2",
      "ys = torch.arange(h, device=device, dtype=torch.float32) - h / 2"),
    M("met-baseline-tol", "metrics.py", "dropped argument", "centre_pointing_tol ignores "
      "tolerance_px",
      '"centre_pointing_tol": pointing_game(centre, masks, tolerance_px).float(),',
      '"centre_pointing_tol": pointing_game(centre, masks).float(),'),
    M("met-ceiling-pool", "metrics.py", "wrong reduction", "ceiling pools the mask by max, "
      "not by its share of each cell",
      "pooled = F.adaptive_avg_pool2d(masks[:, None].float(), size)[:, 0]",
      "pooled = F.adaptive_max_pool2d(masks[:, None].float(), size)[:, 0]"),
    M("met-boot-groups", "metrics.py", "groups ignored", "bootstrap checks the groups, then "
      "resamples items",
      "        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, gid, diff)\n"
      "        counts = torch.zeros(k, dtype=torch.float64).index_add_(0, gid, "
      "torch.ones_like(diff))\n",
      "        sums, counts = diff, torch.ones_like(diff)\n"),
    M("met-boot-pooled", "metrics.py", "wrong reduction", "resampled mean = mean of group means, "
      "not the pooled mean of the items",
      "means = sums[idx].sum(dim=1) / counts[idx].sum(dim=1)",
      "means = (sums[idx] / counts[idx]).mean(dim=1)"),
    M("met-boot-quantile", "metrics.py", "CI quantile wrong", "a 90% interval reported as 95%",
      "torch.tensor([0.025, 0.975], dtype=torch.float64)",
      "torch.tensor([0.05, 0.95], dtype=torch.float64)"),
    M("met-boot-sign", "metrics.py", "wrong sign", "paired difference b - a",
      "    diff = a - b\n", "    diff = b - a\n"),
    # ------------------------------------------------------------------ faithfulness.py
    M("fa-auc", "faithfulness.py", "off-by-one", "curve AUC divides by K + 1 samples, not K "
      "intervals",
      "return (curve.sum(dim=-1) - (curve[..., 0] + curve[..., -1]) / 2) / k",
      "return (curve.sum(dim=-1) - (curve[..., 0] + curve[..., -1]) / 2) / (k + 1)"),
    M("fa-order", "faithfulness.py", "wrong sign", "pixels removed least salient first",
      "order = maps.reshape(n, -1).argsort(dim=1, descending=True, stable=True)",
      "order = maps.reshape(n, -1).argsort(dim=1, descending=False, stable=True)"),
    M("fa-counts", "faithfulness.py", "rounding", "pixels per step floored, not rounded",
      "counts = [round(k * h * w / steps) for k in range(steps + 1)]",
      "counts = [k * h * w // steps for k in range(steps + 1)]"),
    M("fa-baseline-default", "faithfulness.py", "wrong default", "default baselines swapped "
      "(deletion to blur, insertion to zeros)",
      'baseline = "zeros" if mode == "deletion" else "blur"',
      'baseline = "blur" if mode == "deletion" else "zeros"'),
    M("fa-target-index", "faithfulness.py", "dropped argument", "per-image targets not "
      "gathered for the batch's images",
      "select_target(target, n, index=idx.cpu())", "select_target(target, n)"),
    M("fa-ranks-ties", "faithfulness.py", "off-by-one", "average rank of ties off by one half",
      "avg = ends - (counts.double() - 1) / 2", "avg = ends - counts.double() / 2"),
    M("fa-spearman-centre", "faithfulness.py", "wrong reduction", "ranks centred by the batch "
      "mean, not each row's",
      "    ra = ra - ra.mean(dim=1, keepdim=True)\n", "    ra = ra - ra.mean()\n",
      equivalent="every row of ranks 1..M sums to M(M+1)/2 (averaged ties keep the sum), so "
                 "the batch mean equals each row's mean"),
    M("fa-stages", "sanity.py", "order reversed", "randomisation stages bottom-up",
      "    return stages[::-1]\n", "    return stages\n"),
    M("fa-rng", "sanity.py", "side effect", "randomisation seeds the global RNG "
      "(fork_rng disabled)",
      "    with torch.random.fork_rng(devices=[]):\n        torch.manual_seed(seed)\n"
      "        for stage in stages:",
      "    with torch.random.fork_rng(devices=[], enabled=False):\n        "
      "torch.manual_seed(seed)\n        for stage in stages:"),
    # ------------------------------------------------------------------ scoreboard.py
    M("sb-ci-groups", "scoreboard.py", "groups ignored", "table intervals resample pairs, not "
      "images",
      "self.seed, groups=self.image_index[keep])\n\n    @property",
      "self.seed)\n\n    @property"),
    M("sb-compare-other", "scoreboard.py", "dropped argument", "compare(other=...) takes b from "
      "this board",
      "sa, sb = self._pick(a, metric), board_b._pick(b, metric)",
      "sa, sb = self._pick(a, metric), self._pick(b, metric)"),
    M("sb-compare-nan", "scoreboard.py", "NaN handling", "compare drops pairs with NaN in a only",
      "keep = ~(torch.isnan(sa) | torch.isnan(sb))", "keep = ~torch.isnan(sa)"),
    M("sb-pick-uniform", "scoreboard.py", "wrong key", "the uniform baseline's energy is the "
      "centre's",
      '"energy": f"{method}_energy",', '"energy": "centre_energy",'),
    M("sb-pointing-tol", "scoreboard.py", "dropped argument", "pointing_tol scored without the "
      "tolerance",
      'out["pointing_tol"].append(hits_at(ys, xs, mask, tolerance_px).float())',
      'out["pointing_tol"].append(hits_at(ys, xs, mask).float())'),
    M("sb-ceiling-tol", "scoreboard.py", "dropped argument", "ceilings use the default 15 px, "
      "not tolerance_px",
      "dilated = dilate(mask, tolerance_px)", "dilated = dilate(mask, 0)"),
    M("sb-baseline-share", "scoreboard.py", "swapped pair", "baseline target share measured on "
      "the other object",
      "torch.where(two, target_share(maps, mask, other), nan)",
      "torch.where(two, target_share(maps, other, mask), nan)"),
    M("sb-order", "scoreboard.py", "wrong key", "pairs ordered by object slot, then image",
      "key=lambda p: (image_index[p], slots[p])", "key=lambda p: (slots[p], image_index[p])"),
    M("sb-empty-slot", "scoreboard.py", "dropped mask", "empty object slots not zeroed in the "
      "backward's score",
      "return picked * valid.to(logits.device)", "return picked",
      equivalent="in eval mode each image's gradient depends on its own score only, and the "
                 "images of empty slots are never read (only `local` rows are scored)"),
    # ------------------------------------------------------------------ gradflow.py
    M("gf-gpre", "gradflow.py", "off-by-one", "ReLU mask y >= 0 (always true after ReLU)",
      "g_pre = cap.gradients[block] * (cap.activations[block] > 0)",
      "g_pre = cap.gradients[block] * (cap.activations[block] >= 0)"),
    M("gf-share", "gradflow.py", "swapped pair", "skip share computed from the branch norm",
      "share = torch.where(total > 0, s_norm / total.clamp(min=1e-300)",
      "share = torch.where(total > 0, b_norm / total.clamp(min=1e-300)"),
    M("gf-cosine", "gradflow.py", "wrong norm", "cosine divides by |skip| |input|, not "
      "|skip| |branch|",
      "(s * b).sum(1) / (s_norm * b_norm).clamp(min=1e-300)",
      "(s * b).sum(1) / (s_norm * g_norm).clamp(min=1e-300)"),
    M("gf-zero-positions", "gradflow.py", "all vs any", "zero position = any channel zero, not "
      "all",
      '"zero_positions": float(zero.all(dim=1).float().mean())',
      '"zero_positions": float(zero.any(dim=1).float().mean())'),
    M("gf-recon", "gradflow.py", "wrong sign", "reconstruction error of skip - branch",
      "reconstruction_error=float((s + b - g).abs().max())",
      "reconstruction_error=float((s - b - g).abs().max())"),
    M("gf-row-sum", "gradflow.py", "sum vs mean", "table row sums the skip norms over images",
      '"skip_norm": float(self.skip_norm.mean()),', '"skip_norm": float(self.skip_norm.sum()),'),
    # ------------------------------------------------------------------ truncate.py
    M("tr-kept", "truncate.py", "off-by-one", "the cut drops its last block",
      "kept = kept[:int(index) + 1]", "kept = kept[:int(index)]"),
    M("tr-probe-bias", "truncate.py", "dropped init", "probe bias left randomly initialised",
      "        nn.init.zeros_(probe.weight)\n        nn.init.zeros_(probe.bias)\n",
      "        nn.init.zeros_(probe.weight)\n"),
    M("tr-mode", "truncate.py", "state not copied", "the cut is in train mode whatever the "
      "model's mode",
      "    cut.train(model.training)\n", ""),
    M("tr-channels", "truncate.py", "tolerance", "original head accepted when the cut has "
      "fewer channels",
      "if in_features != channels:", "if in_features < channels:"),
    M("tr-stem-copy", "truncate.py", "aliasing", "stem shared with the full model, not copied",
      "stem = {n: copy.deepcopy(getattr(model, n)) for n in resnet.STEM}",
      "stem = {n: getattr(model, n) for n in resnet.STEM}"),
    # ------------------------------------------------------------------ probes.py
    M("pr-fold-bias", "probes.py", "wrong sign", "standardisation folded back with + mean",
      "head.bias.copy_((b - weight @ mean).to(head.bias))",
      "head.bias.copy_((b + weight @ mean).to(head.bias))"),
    M("pr-loss-weight", "probes.py", "wrong reduction", "epoch loss = sum of batch means / N",
      "total += float(loss.detach()) * len(idx)", "total += float(loss.detach())"),
    M("pr-deepest", "probes.py", "min vs max", "one feature pass stops at the shallowest cut",
      "deepest = max(wanted, key=order.index)", "deepest = min(wanted, key=order.index)"),
    M("pr-eval", "probes.py", "mode", "cut features computed in the model's train mode",
      "    was_training = model.training\n    model.eval()\n    feats: dict",
      "    was_training = model.training\n    feats: dict"),
    # ------------------------------------------------------------------ resnet.py
    M("rn-block-of", "resnet.py", "off-by-one", "a stage means its first block, not its last",
      'return [n for n in names if n.startswith(after + ".")][-1]',
      'return [n for n in names if n.startswith(after + ".")][0]'),
    M("rn-skip-detach", "resnet.py", "condition reversed", "skip detached when skip_gradient "
      "is True",
      "    if not skip_gradient:\n        identity = identity.detach()\n",
      "    if skip_gradient:\n        identity = identity.detach()\n"),
    M("rn-branch-end", "resnet.py", "order", "branch end looked up bn2 first (Bottleneck: bn2)",
      'for name in ("bn3", "bn2"):', 'for name in ("bn2", "bn3"):'),
    M("rn-forward-to", "resnet.py", "off-by-one", "forward_to stops one block early",
      "for block in list(seq)[:int(index) + 1]:", "for block in list(seq)[:int(index)]:"),
    M("rn-check-fc", "resnet.py", "dropped check", "check_resnet does not ask for fc",
      'missing = [n for n in (*STEM, "layer1", "avgpool", "fc") if not hasattr(model, n)]',
      'missing = [n for n in (*STEM, "layer1", "avgpool") if not hasattr(model, n)]'),
    # ------------------------------------------------------------------ verdict.py
    M("vd-effect", "verdict.py", "off-by-one", "an interval touching the margin shows an effect",
      "return self.derivation is None and self.low > margin",
      "return self.derivation is None and self.low >= margin"),
    M("vd-derived-counts", "verdict.py", "dropped check", "a derived 0 counts as an effect",
      "return self.derivation is None and self.low > margin", "return self.low >= margin"),
    M("vd-all", "verdict.py", "any for all", "one isolated effect above is enough for 'supported'",
      "if len(above) == len(isolated):", "if above and len(above) >= 1:"),
    M("vd-source-cause", "verdict.py", "dropped check", "a source that does not vary the cause "
      "is accepted",
      "if source is not None and cause not in source.changed:",
      "if source is not None and cause not in source.changed + [cause]:"),
    M("vd-source-many", "verdict.py", "dropped check", "a one-factor source can confound",
      "if source is not None and len(source.changed) > 1 and source.shows_effect(margin):",
      "if source is not None and source.shows_effect(margin):"),
    M("vd-source-margin", "verdict.py", "dropped argument", "the source ignores the margin",
      "len(source.changed) > 1 and source.shows_effect(margin):",
      "len(source.changed) > 1 and source.shows_effect():"),
    M("vd-changed", "verdict.py", "set op", "a factor present in one setting only is not a "
      "change", "set(x) | set(y)", "set(x) & set(y)"),
    M("vd-seeds-fixed", "verdict.py", "resampling dropped", "seeds are not resampled",
      "means = per_boot.gather(0, seeds.T).mean(0)", "means = per_boot.mean(0)"),
    M("vd-groups", "verdict.py", "wrong grouping", "pairs of one image resampled apart",
      "_, gid = torch.unique(torch.as_tensor(groups)[keep], return_inverse=True)",
      "gid = torch.arange(int(keep.sum()))"),
    M("vd-margin-median", "verdict.py", "wrong statistic", "margin from the largest seed sd",
      "quantile(0.5)", "quantile(1.0)"),
    # ------------------------------------------------------------------ claims.py
    M("cl-c-isolated", "claims.py", "swapped pair", "claim (c) compared against the wrong head",
      'return [effect(ev, _cell(h, k, "cut"), _cell(h, k, "full"), metric,',
      'return [effect(ev, _cell(h, k, "cut"), _cell("trained fc", k, "full"), metric,'),
    M("cl-main-depth", "claims.py", "wrong weight", "depth main effect not averaged",
      'for d, s in (("cut", 1), ("full", -1))],', 'for d, s in (("cut", 1), ("full", 0))],'),
    M("cl-steps", "claims.py", "off-by-one", "the inside-block steps skip one point",
      "zip(points, points[1:], strict=False)", "zip(points, points[2:], strict=False)"),
    # ------------------------------------------------------------------ session.py
    M("se-key-image", "session.py", "cache key missing a field", "gradient cache keyed by "
      "class only (stale across images)",
      "        key = (self.index, cls)\n", "        key = cls\n"),
    M("se-key-class", "session.py", "cache key missing a field", "Score-CAM cache keyed "
      "without the class",
      "key = (layer, method, cls if m.class_specific else None)", "key = (layer, method)"),
    M("se-lru", "session.py", "LRU broken", "a cache hit does not refresh the entry (FIFO "
      "eviction)",
      "            self._grads.move_to_end(key)\n", ""),
    M("se-evict-current", "session.py", "off-by-one", "eviction may drop the current entry",
      "while len(self._grads) > 1 and total > self.budget.cache_bytes:",
      "while len(self._grads) > 0 and total > self.budget.cache_bytes:"),
    M("se-extra-clear", "session.py", "stale cache", "a new image keeps the old image's "
      "Score-CAM maps",
      "        self._extra.clear()\n", ""),
    M("se-extra-count", "session.py", "wrong count", "extra forwards counted per map, not per "
      "batch",
      'self.counts["extra_forward"] += counted.calls', 'self.counts["extra_forward"] += 1'),
    # ------------------------------------------------------------------ explorer.py
    M("ex-blend", "explorer.py", "swapped pair", "overlay blends map into image the wrong way "
      "(alpha 0 shows the map)",
      "Image.blend(self._rgb_img, self._heat_img, float(self.alpha_slider.value))",
      "Image.blend(self._heat_img, self._rgb_img, float(self.alpha_slider.value))"),
    M("ex-class-redraw", "explorer.py", "dropped redraw", "a class change does not redraw the "
      "probability table (bold row stale)",
      "self._timed(lambda: self._update(grads=True))",
      "self._timed(lambda: self._update(maps=True))"),
    M("ex-follow-top", "explorer.py", "condition reversed", "choosing the top class by hand "
      "stops following it",
      'if self.top_class.value and change["new"] != top:',
      'if self.top_class.value and change["new"] == top:'),
    M("ex-default-method", "explorer.py", "wrong default", "first method shown is the last one",
      "method = start.method or self.methods[0]", "method = start.method or self.methods[-1]"),
]


# ----------------------------------------------------------------------------- mechanics
def check_mutants(mutants: list[Mutant], root: Path = REPO) -> None:
    """Every replacement must match exactly once in the source under ``root``; ids unique."""
    ids = [m.id for m in mutants]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise SystemExit(f"mutation: duplicate mutant ids {dup}")
    bad = []
    for m in mutants:
        if m.module not in TESTS and m.tests is None:
            bad.append(f"{m.id}: no test files for module {m.module}")
            continue
        path = root / m.path
        source = path.read_text() if path.is_file() else ""
        count = source.count(m.old)
        if count != 1 or m.old == m.new:
            bad.append(f"{m.id}: its text matches {count} time(s) in {m.path} "
                       f"(expected exactly once): {m.old.strip()[:70]!r}")
    if bad:
        raise SystemExit("mutation: these replacements no longer match the code; update them:\n  "
                         + "\n  ".join(bad))


def repo_files() -> list[str]:
    """The files a copy holds: tracked and untracked-not-ignored files under COPIED."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
        names = [n for n in out.stdout.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):       # no git: walk the folders
        names = [str(p.relative_to(REPO)) for top in COPIED for p in
                 ([REPO / top] if (REPO / top).is_file() else (REPO / top).rglob("*"))
                 if p.is_file() and "__pycache__" not in p.parts]
    keep = [n for n in names if n.startswith(COPIED) and (REPO / n).is_file()
            and "__pycache__" not in n]
    return sorted(set(keep))


def snapshot(files: list[str]) -> Path:
    """The files, copied once from the working tree to a temporary folder."""
    root = Path(tempfile.mkdtemp(prefix="gradcam-mutation-snapshot-"))
    for name in files:
        dest = root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest)
    return root


def make_copy(base: Path, mutant: Mutant) -> Path:
    """A fresh copy of the snapshot ``base`` with ``mutant`` applied (to the copy only)."""
    root = Path(tempfile.mkdtemp(prefix=f"gradcam-mutant-{mutant.id}-"))
    shutil.copytree(base, root, dirs_exist_ok=True)
    target = root / mutant.path
    source = target.read_text()
    if source.count(mutant.old) != 1:        # check_mutants ran on this snapshot: cannot happen
        raise SystemExit(f"mutation: {mutant.id} does not match {mutant.path} exactly once")
    target.write_text(source.replace(mutant.old, mutant.new, 1))
    return root


def child_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")       # one core: others share the machine
    env.setdefault("MKL_NUM_THREADS", "1")
    return env


def existing(root: Path, files: list[str], missing: set[str]) -> list[str]:
    out = []
    for f in files:
        if (root / f).is_file():
            out.append(f)
        else:
            missing.add(f)
    return out


def run_tests(python: str, root: Path, files: list[str], timeout: float,
              ) -> tuple[str, float, str]:
    """``(result, seconds, output tail)``; result: killed / survived / timeout / error."""
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *files]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=child_env(root), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"")
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        return "timeout", time.perf_counter() - t0, out[-2000:]
    seconds = time.perf_counter() - t0
    tail = (proc.stdout + proc.stderr)[-2000:]
    result = {0: "survived", 1: "killed", 2: "killed"}.get(proc.returncode, "error")
    return result, seconds, tail


def check_import(python: str, root: Path) -> None:
    code = f"import {PACKAGE}; print({PACKAGE}.__file__)"
    out = subprocess.run([python, "-c", code], cwd=root, env=child_env(root),
                         capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"mutation: the copy imports {PACKAGE} from {out}, not from the copy "
                         f"{root}: PYTHONPATH does not take precedence")


# ----------------------------------------------------------------------------- report
def table(rows: list[dict]) -> str:
    head = f"{'id':<22}{'module':<17}{'kind':<26}{'result':<10}{'s':>6}  description"
    lines = [head, "-" * len(head)]
    for r in rows:
        m: Mutant = r["mutant"]
        result = r["result"]
        note = m.description
        if m.equivalent:
            note += f"  [EQUIVALENT: {m.equivalent}]"
            if result == "killed":
                note += "  (!! killed: not equivalent after all)"
        lines.append(f"{m.id:<22}{m.module:<17}{m.kind[:25]:<26}{result:<10}"
                     f"{r['seconds']:>6.1f}  {note}")
    return "\n".join(lines)


def scores(rows: list[dict]) -> str:
    per: dict[str, list[int]] = {}
    for r in rows:
        m: Mutant = r["mutant"]
        if m.id == "canary" or m.equivalent:
            continue
        k = per.setdefault(m.module, [0, 0])
        k[0] += r["result"] in ("killed", "timeout")
        k[1] += 1
    lines = ["mutation score (killed or timed out / non-equivalent mutants; canary not counted):"]
    total = [0, 0]
    for module in sorted(per):
        killed, n = per[module]
        total[0] += killed
        total[1] += n
        lines.append(f"  {module:<17}{killed:>3} / {n:<3} {100 * killed / n:5.1f} %")
    if total[1]:
        lines.append(f"  {'overall':<17}{total[0]:>3} / {total[1]:<3} "
                     f"{100 * total[0] / total[1]:5.1f} %")
    equivalent = sum(1 for r in rows if r["mutant"].equivalent)
    lines.append(f"  equivalent mutants (not scored): {equivalent}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    parser.add_argument("--list", action="store_true",
                        help="list the mutants (each replacement checked), run nothing")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds per mutant's test run (default 300)")
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="the interpreter that runs the tests (default: .venv's)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the unmutated run of the test files (faster, less safe)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the pytest output of survivors and errors")
    args = parser.parse_args(argv)

    by_id = {m.id: m for m in MUTANTS}
    if args.list:
        check_mutants(MUTANTS)
        for m in MUTANTS:
            eq = f"  [EQUIVALENT: {m.equivalent}]" if m.equivalent else ""
            print(f"{m.id:<22}{m.module:<17}{m.kind[:25]:<26}{m.description}{eq}")
        print(f"{len(MUTANTS)} mutants ({sum(bool(m.equivalent) for m in MUTANTS)} marked "
              f"equivalent), every replacement matches its module exactly once")
        return 0
    unknown = [i for i in args.only or [] if i not in by_id]
    if unknown:
        raise SystemExit(f"--only: unknown mutant id(s) {unknown}; see --list")
    selected = [by_id[i] for i in args.only] if args.only else list(MUTANTS)
    if selected[0].id != "canary":
        selected = [by_id["canary"], *[m for m in selected if m.id != "canary"]]

    files = repo_files()
    missing: set[str] = set()
    t_start = time.perf_counter()
    print(f"mutation: {len(selected)} mutants, {len(files)} files per copy, python "
          f"{args.python}, timeout {args.timeout:.0f} s", flush=True)
    base = snapshot(files)
    rows = []
    try:
        check_mutants(selected, base)
        check_import(args.python, base)
        if not args.no_baseline:
            union = existing(base, sorted({f for m in selected for f in m.test_files()}),
                             missing)
            result, seconds, tail = run_tests(args.python, base, union, args.timeout * 3)
            if result != "survived":
                print(tail)
                raise SystemExit(f"mutation: the UNMUTATED copy does not pass {union} "
                                 f"({result}); fix the tests first")
            print(f"baseline: the unmutated copy passes {len(union)} test files "
                  f"({seconds:.1f} s)", flush=True)
        for m in selected:
            root = make_copy(base, m)
            try:
                result, seconds, tail = run_tests(
                    args.python, root, existing(root, m.test_files(), missing), args.timeout)
            finally:
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)
            rows.append({"mutant": m, "result": result, "seconds": seconds})
            print(f"  {m.id:<22}{result:<10}{seconds:6.1f} s", flush=True)
            if args.verbose and result in ("survived", "error"):
                print("    " + tail.strip().replace("\n", "\n    "))
            if m.id == "canary" and result not in ("killed", "timeout"):
                print(tail)
                raise SystemExit("mutation: the canary survived: the tests do not import the "
                                 "mutated copy; no result below would mean anything")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print()
    if missing:
        print(f"note: test files not found, skipped: {', '.join(sorted(missing))}")
    print(table(rows))
    print()
    print(scores(rows))
    survivors = [r["mutant"].id for r in rows
                 if r["result"] == "survived" and not r["mutant"].equivalent]
    print(f"  non-equivalent survivors: {', '.join(survivors) if survivors else 'none'}")
    print(f"  total run time: {time.perf_counter() - t_start:.0f} s")
    errors = [r["mutant"].id for r in rows if r["result"] == "error"]
    if errors:
        print(f"mutation: harness errors (pytest exit code not 0/1/2) for {errors}; run with "
              "--only ... -v to see them")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
