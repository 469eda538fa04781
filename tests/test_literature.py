"""The literature rows' agreement rules, on hand-made measurements and on the shipped evidence."""

import torch

from gradcam_edu import literature
from gradcam_edu.evidence import load_evidence


def test_short_paths_are_context_not_a_test():
    flows = [{"skip_share": v} for v in (0.6, 0.7, 0.4)]
    row = literature._paths_row(flows)
    assert row["agreement"] == "not tested" and "above 0.5 at 2 of 3 blocks" in row["ours"]
    assert "path lengths" in row["rule"]


def test_hirescam_rule_reads_map_differences():
    ev = load_evidence()
    assert literature._hirescam_row(ev, None)["agreement"] == "not tested"
    row = literature._hirescam_row(ev, {"layer4.1": 3e-8, "layer3.1": 0.8})
    assert row["agreement"] == "agrees" and "layer3.1 0.80" in row["ours"]
    assert "layer4.1 < 1e-05 (pool" in row["ours"]      # rounding noise: no digits printed
    assert literature._hirescam_row(ev, {"layer4.1": 3e-3, "layer3.1": 0.8})["agreement"] \
        == "disagrees"                                     # not equal where it must be
    assert literature._hirescam_row(ev, {"layer4.1": 0.0, "layer3.1": 0.05})["agreement"] \
        == "disagrees"                                     # equal where it should differ


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

    row = literature._sanity_row(rows(0.8))
    assert row["agreement"] == "agrees"
    assert "fc only: gradient 0.90, guided_backprop 0.90, gradcam 0.90" in row["ours"]
    assert literature._sanity_row(rows(0.4))["agreement"] == "disagrees"  # GB passed too


def test_rows_on_the_shipped_evidence():
    ev = load_evidence()
    flows = [{"skip_share": 0.6}] * 3
    rows = literature.literature_table(ev, flows)
    assert [r["key"] for r in rows] == ["gradcam-depth", "hirescam", "layercam", "sanity",
                                        "centre", "short-paths"]
    assert all(r["agreement"] in ("agrees", "partly", "disagrees", "reported", "not tested")
               for r in rows)
    centre = float(ev.baselines["centre_pointing_tol"].mean())
    assert f"{centre:.2f}" in rows[4]["ours"]
    rand = literature.randomisation_rows(ev)
    assert {r["method"] for r in rand} == {"gradient", "guided_backprop", "gradcam"}
    assert [r["stage"] for r in rand][::3] == ["fc", "layer4", "layer3", "layer2", "layer1",
                                              "bn1", "conv1"]
    assert all(r["low"] <= r["mean"] <= r["high"] for r in rand)
    assert torch.isfinite(torch.tensor([r["mean"] for r in rand])).all()
