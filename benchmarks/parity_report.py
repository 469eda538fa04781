"""What exactly matches the reference libraries, where, and by how much: printed, not claimed.

    python benchmarks/parity_report.py

For torchvision's resnet18 and resnet50 (seeded, random BatchNorm statistics, 3 images of
128 x 128, a different class per image), every method of grad-cam 1.5.x and captum's
LayerGradCam is compared with ``gradcam_edu`` at the layers of ``tests/test_parity.py`` plus
resnet50's pre-BN ``layer1.0.conv3``. Prints, per method and layer, the largest absolute
difference of the displayed maps (grad-cam's convention: ReLU, min-max, bilinear resize,
min-max again) with both sides in float32 and with both in float64, and how far our own
float32 map lies from our float64 map (the conditioning of the method at that layer). The
sign of Eigen-CAM's principal component is arbitrary: ours is corrected (the largest
projection positive, grad-cam's Seg-Eigen-CAM rule), grad-cam 1.5's EigenCAM class leaves it
as the SVD returns it; the row "eigencam" compares each image with the sign that matches
best and says how many images needed the other sign.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerGradCam
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from gradcam_edu import cams
from gradcam_edu.capture import capture

# the very setup tests/test_parity.py checks (models, images, classes, layers)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_parity import CLASSES, LAYERS, REFERENCE, SIZE, seeded  # noqa: E402

LAYERS = {**LAYERS, "resnet50": [*LAYERS["resnet50"], "layer1.0.conv3"]}


def ours(raw: torch.Tensor) -> np.ndarray:
    return cams.normalize(cams.finalize(raw.detach(), (SIZE, SIZE))).double().numpy()


def theirs(model, x, module, method) -> np.ndarray:
    with REFERENCE[method](model=model, target_layers=[module]) as ref:
        return ref(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in CLASSES])


def _eigen(mine_raw: torch.Tensor, ref: np.ndarray) -> tuple[float, int]:
    """Largest difference with the better sign per image, and how many images flipped."""
    same = np.abs(ours(mine_raw) - ref).reshape(len(ref), -1).max(axis=1)
    flipped = np.abs(ours(-mine_raw) - ref).reshape(len(ref), -1).max(axis=1)
    return float(np.minimum(same, flipped).max()), int((flipped < same).sum())


def differences(model, x, layers, dtype) -> dict[tuple[str, str], tuple[float, str]]:
    model, x = copy.deepcopy(model).to(dtype), x.to(dtype)
    modules = dict(model.named_modules())
    with capture(model, layers) as cap:
        cap.forward(x)
        cap.backward(CLASSES)
    out = {}
    for layer in layers:
        A, G = cap.activations[layer], cap.gradients[layer]
        for method in REFERENCE:
            if method == "eigencam" and A.shape[-1] > 32:
                continue          # grad-cam's full-matrix SVD: too slow at 64 x 64
            ref = theirs(model, x, modules[layer], method)
            if method == "eigencam":
                diff, flips = _eigen(cams.eigen_cam(A), ref)
                out[(layer, method)] = (diff, f"{flips} of {len(ref)} images of opposite sign")
            else:
                mine = ours(cams.raw_map(method, A, G))
                out[(layer, method)] = (float(np.abs(mine - ref).max()), ours(
                    cams.raw_map(method, A, G)))
        attr = LayerGradCam(model, modules[layer]).attribute(
            x, target=CLASSES, relu_attributions=False).detach()[:, 0]
        raw = cams.grad_cam(A, G)
        out[(layer, "captum raw Grad-CAM, relative")] = (float(
            (raw - attr).abs().max() / attr.abs().max().clamp(min=1e-30)), "")
    return out


def main() -> None:
    torch.set_num_threads(1)
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    print(f"largest |gradcam_edu - reference| of the displayed maps, {SIZE} px, "
          f"classes {CLASSES}; last column: largest |ours float32 - ours float64|")
    print(f"{'model':<9}{'layer':<21}{'method':<31}{'float32':>9}{'float64':>9}{'ours':>10}")
    for arch, layers in LAYERS.items():
        model = seeded(arch)
        d32 = differences(model, x, layers, torch.float32)
        d64 = differences(model, x, layers, torch.float64)
        for key, (diff, extra) in d32.items():
            if isinstance(extra, np.ndarray):
                extra = f"{np.abs(extra - d64[key][1]).max():10.1e}"
            print(f"{arch:<9}{key[0]:<21}{key[1]:<31}{diff:>9.1e}{d64[key][0]:>9.1e} {extra}")


if __name__ == "__main__":
    main()
