"""Does a near-tie in the pointing game follow the CPU's kernels? Strict peaks vs the tie rule.

    python tools/pointing_ties.py

Scores pointing (strict and within 15 px) of Grad-CAM and Grad-CAM++ at four layers of the
shipped resnet18-shapes on the 94 (image, class) pairs of test images 0..63, once per torch
kernel level (native, avx2, default; one thread) and per tie rule: ``tie=0`` (only exactly
equal values tie: the rule before) and the package's ``metrics.PEAK_TIE`` (values within
1e-4 of the map's range below the maximum tie, and go to the pixel nearest the centre).
A score that differs between kernel levels under one rule is marked ``<- moves``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ISA = {"native": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
       "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}}
LAYERS = ["conv1", "layer1.1", "layer4.0.conv1", "layer4.1.conv2"]


def measure(tie: float) -> dict:
    import torch

    from gradcam_edu import metrics, scoreboard, shapes, weights

    torch.set_num_threads(1)
    peak = metrics.peak_location
    scoreboard.peak_location = lambda maps: peak(maps, tie=tie)
    model = weights.load_model("resnet18-shapes")
    images, masks, classes = shapes.shapes_sample(64)
    board = scoreboard.scoreboard(model, images, masks, classes, LAYERS,
                                  methods=("gradcam", "gradcam++"), n_boot=10)
    return {f"{la} {m}": [float(s["pointing"].mean()), float(s["pointing_tol"].mean())]
            for (la, m), s in board.scores.items()}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(float(sys.argv[2]))))
        return
    from gradcam_edu.metrics import PEAK_TIE

    for tie in (0.0, PEAK_TIE):
        runs = {}
        for isa, env in ISA.items():
            out = subprocess.run([sys.executable, __file__, "--child", str(tie)], check=True,
                                 capture_output=True, text=True, env={**os.environ, **env})
            runs[isa] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"tie = {tie:g}: pointing strict / within 15 px, per kernel level "
              f"({', '.join(ISA)})")
        for key in runs["native"]:
            cells = [runs[isa][key] for isa in ISA]
            moves = any(c != cells[0] for c in cells)
            text = "   ".join(f"{p:.3f} / {t:.3f}" for p, t in cells)
            print(f"  {key:<24} {text}{'   <- moves' if moves else ''}")


if __name__ == "__main__":
    main()
