"""The literature rows' agreement rules, on hand-made measurements and on the shipped evidence."""

import torch

from gradcam_edu import literature
from gradcam_edu.evidence import load_evidence


def test_short_paths_rule():
    flows = [{"skip_share": v} for v in (0.6, 0.7, 0.4)]
    row = literature._paths_row(flows)
    assert row["agreement"] == "agrees" and "above 0.5 at 2 of 3 blocks" in row["ours"]
    assert literature._paths_row([{"skip_share": 0.3}] * 2)["agreement"] == "disagrees"


def test_sanity_rule_wants_guided_backprop_to_fail():
    def rows(gb_high):
        return [{"stage": "fc", "method": m, "mean": 0.9, "low": 0.8, "high": 0.95}
                for m in ("gradient", "guided_backprop", "gradcam")] + [
            {"stage": "layer4", "method": "gradient", "mean": 0.1, "low": 0.0, "high": 0.2},
            {"stage": "layer4", "method": "guided_backprop", "mean": 0.7, "low": 0.3,
             "high": gb_high},
            {"stage": "layer4", "method": "gradcam", "mean": 0.1, "low": 0.0, "high": 0.3},
            {"stage": "conv1", "method": "guided_backprop", "mean": 0.1, "low": 0.0,
             "high": 0.2}]

    assert literature._sanity_row(rows(0.8))["agreement"] == "agrees"
    assert literature._sanity_row(rows(0.4))["agreement"] == "disagrees"  # GB passed too


def test_rows_on_the_shipped_evidence():
    ev = load_evidence()
    flows = [{"skip_share": 0.6}] * 3
    rows = literature.literature_table(ev, flows)
    assert [r["key"] for r in rows] == ["gradcam-depth", "hirescam", "layercam", "sanity",
                                        "centre", "short-paths"]
    assert all(r["agreement"] in ("agrees", "partly", "disagrees", "reported") for r in rows)
    centre = float(ev.baselines["centre_pointing_tol"].mean())
    assert f"{centre:.2f}" in rows[4]["ours"]
    rand = literature.randomisation_rows(ev)
    assert {r["method"] for r in rand} == {"gradient", "guided_backprop", "gradcam"}
    assert [r["stage"] for r in rand][::3] == ["fc", "layer4", "layer3", "layer2", "layer1",
                                              "bn1", "conv1"]
    assert all(r["low"] <= r["mean"] <= r["high"] for r in rand)
    assert torch.isfinite(torch.tensor([r["mean"] for r in rand])).all()
