"""The shipped faithfulness scores: references by hand, safe loading, the code still measures
what the file holds, and the table beside localisation."""

import pytest
import torch

from gradcam_edu import weights
from gradcam_edu.claims import faithfulness_table
from gradcam_edu.evidence import Evidence, load_evidence, setting, setting_key
from gradcam_edu.faithfulness import curve_auc, perturbation_curves
from gradcam_edu.faithfulness_board import faithfulness_board
from gradcam_edu.faithfulness_evidence import (
    LAYERS,
    METHODS,
    N_IMAGES,
    REFERENCES,
    Faithfulness,
    load_faithfulness,
    reference_maps,
    save_faithfulness,
)
from gradcam_edu.metrics import centre_map
from gradcam_edu.shapes import shapes_sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped():
    return load_faithfulness()


def test_reference_maps_by_hand():
    a = torch.zeros(1, 8, 8, dtype=torch.bool)
    a[0, 0:2, 0:2] = True                          # image 0: one object in the corner
    b = torch.zeros(2, 8, 8, dtype=torch.bool)
    b[0, 6:8, 6:8] = True                          # image 1: two objects
    b[1, 3:5, 3:5] = True
    refs = reference_maps([a, b], [[1], [4, 2]])
    assert set(refs) == set(REFERENCES)
    assert all(r.shape == (3, 8, 8) for r in refs.values())
    mask = refs["object mask"]                      # pair order: image order, then objects
    assert mask[0, 0:2, 0:2].min() > mask[0, 5:, 5:].max()
    assert mask[1, 6:8, 6:8].min() > mask[1, 0:2, 0:2].max()
    assert mask[2, 3:5, 3:5].min() > mask[2, 0, 0]
    assert torch.equal(refs["centre"][1], centre_map(8, 8))
    assert torch.equal(refs["random"], reference_maps([a, b], [[1], [4, 2]])["random"])


def test_shipped_file_covers_every_layer_method_seed_and_pair(shipped):
    ev = load_evidence()
    assert shipped.seeds == ev.seeds
    assert set(shipped.scores) == ({f"{la}|{m}" for la in LAYERS for m in METHODS}
                                   | {f"(reference)|{r}" for r in REFERENCES})
    p = len(shipped.image_index)
    assert len(torch.unique(shipped.image_index)) == N_IMAGES
    assert torch.equal(shipped.image_index, ev.image_index[:p])      # the verdict's pairs
    assert torch.equal(shipped.target_class, ev.target_class[:p])
    for per_mode in shipped.scores.values():
        for t in per_mode.values():
            assert t.shape == (len(shipped.seeds), p)
            assert ((t >= 0) & (t <= 1)).all()


def test_the_code_still_measures_what_the_file_holds(shipped):
    """Recompute the first 3 images of seed 0 at two layers, and the mask reference."""
    model = weights.load_model("resnet18-shapes").eval()
    images, masks, classes = shapes_sample(3, split="test")
    board = faithfulness_board(model, images, classes, ["layer3.1", "layer4.1"], ["gradcam"],
                               steps=shipped.meta["steps"], batch_size=32)
    p = len(board.image_index)
    for la in ("layer3.1", "layer4.1"):
        for mode in ("deletion", "insertion"):
            want = shipped.get(la, "gradcam", mode)[0, :p]
            assert torch.allclose(board.scores[(la, "gradcam")][mode], want, atol=1e-3), la
    maps = reference_maps(masks, classes)["object mask"]
    curves = perturbation_curves(model, images, maps, board.target_class,
                                 shipped.meta["steps"], board.image_index, batch_size=32)
    want = shipped.get("(reference)", "object mask", "deletion")[0, :p]
    assert torch.allclose(curve_auc(curves["deletion"]), want, atol=1e-3)


def test_round_trip_tamper_and_bad_keys(tmp_path):
    fe = Faithfulness({"conv1|gradcam": {"deletion": torch.full((2, 3), 0.25),
                                         "insertion": torch.full((2, 3), 0.5)}},
                      torch.tensor([0, 0, 1]), torch.tensor([1, 2, 3]), (0, 1), {"steps": 4})
    card = save_faithfulness(fe, tmp_path)
    back = load_faithfulness(tmp_path)
    assert torch.equal(back.get("conv1", "gradcam", "insertion"), fe.scores["conv1|gradcam"]
                       ["insertion"])
    assert back.image_index.dtype == torch.int64 and back.seeds == (0, 1)
    blob = bytearray((tmp_path / "faithfulness.safetensors").read_bytes())
    blob[-1] ^= 1
    (tmp_path / "faithfulness.safetensors").write_bytes(bytes(blob))
    with pytest.raises(weights.ChecksumMismatchError, match=card["sha256"][:12]):
        load_faithfulness(tmp_path)
    with pytest.raises(ValueError, match="was not measured"):
        fe.get("layer9", "gradcam", "deletion")
    with pytest.raises(ValueError, match="mode"):
        fe.get("conv1", "gradcam", "area")


def _pair(values_a, values_b, energy_a, energy_b):
    """Two layers' scores on 4 pairs from 2 images x 2 seeds, and the random maps of their
    grids (conv1: 112 x 112, deletion 0.5; layer4.1: 7 x 7, deletion 0.25)."""
    index, cls = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 2])

    def const(d, i):
        return {"deletion": torch.tensor(d).expand(2, 4).clone(),
                "insertion": torch.tensor(i).expand(2, 4).clone()}

    scores = {f"{la}|gradcam": const(*v) for la, v in (("conv1", values_a),
                                                       ("layer4.1", values_b))}
    scores["(reference)|random 112x112"] = const(0.5, 0.9)
    scores["(reference)|random 7x7"] = const(0.25, 0.9)
    fe = Faithfulness(scores, index, cls, (0, 1), {"steps": 4, "references": []})
    ev = Evidence({setting_key(setting(layer=la)): {"energy": torch.tensor(e).expand(2, 4)
                                                    .clone()}
                   for la, e in (("conv1", energy_a), ("layer4.1", energy_b))},
                  index, cls, (0, 1), {})
    return fe, ev


def test_faithfulness_table_by_hand():
    # conv1: deletion 0.4 (its grid's noise 0.5), insertion 0.3, energy 0.1;
    # layer4.1: deletion 0.2 (noise 0.25), insertion 0.6, energy 0.3, on every pair
    fe, ev = _pair((0.4, 0.3), (0.2, 0.6), 0.1, 0.3)
    lines = faithfulness_table(fe, ev, n_boot=50).splitlines()
    assert lines[1] == ("conv1          gradcam  0.400 [0.400, 0.400]   -0.100 [-0.100, -0.100]"
                        "  0.300 [0.300, 0.300]   0.100")
    assert lines[2].startswith("layer4.1       gradcam  0.200 [0.200, 0.200]   -0.050 [-0.050,")
    text = "\n".join(lines)
    assert ("deletion beats the random map of its grid beyond the margin 0: conv1 gradcam, "
            "layer4.1 gradcam") in text
    assert "best mean deletion (within its seed margin 0): layer4.1 gradcam" in text   # lower
    assert "best mean insertion (within its seed margin 0): layer4.1 gradcam" in text
    assert "best mean energy (within its seed margin 0): layer4.1 gradcam" in text


def test_faithfulness_table_refuses_other_pairs():
    fe, ev = _pair((0.4, 0.3), (0.2, 0.6), 0.1, 0.3)
    ev.target_class = torch.tensor([0, 1, 0, 3])
    with pytest.raises(ValueError, match="pairs"):
        faithfulness_table(fe, ev)
