"""True ceilings of a map on a grid, and the clarity (Gini) of a map: closed forms checked by
hand and by brute force over every one-cell map."""

import pytest
import torch

from gradcam_edu import cams, metrics


def masks_56():
    m = torch.zeros(3, 56, 56, dtype=torch.bool)
    m[0, 5:20, 8:30] = True
    m[1, 30:40, 30:52] = True
    m[2, 10:14, 40:44] = True
    return m


def brute_force(masks, grid):
    """Best energy and pointing over all one-cell maps, each finalised like a CAM."""
    n, h, w = masks.shape
    best_e, best_p = torch.zeros(n), torch.zeros(n)
    for k in range(grid * grid):
        m = torch.zeros(n, grid, grid)
        m.view(n, -1)[:, k] = 1
        shown = cams.finalize(m, (h, w))
        best_e = torch.maximum(best_e, metrics.energy_pointing_game(shown, masks))
        best_p = torch.maximum(best_p, metrics.pointing_game(shown, masks).float())
    return best_e, best_p


@pytest.mark.parametrize("grid", [2, 7, 14])
def test_energy_and_pointing_ceilings_equal_the_best_one_cell_map(grid):
    masks = masks_56()
    best_e, best_p = brute_force(masks, grid)
    assert torch.allclose(metrics.energy_ceiling(masks, grid), best_e, atol=1e-6)
    # a flat plateau over several cells can also point between cell centres (ties go to the
    # pixel nearest the image centre), so the pointing ceiling is at least the one-cell best
    assert (metrics.pointing_ceiling(masks, grid) >= best_p).all()


def test_no_random_map_beats_the_energy_ceiling_and_the_reference_is_not_a_bound():
    masks = masks_56()
    ceiling = metrics.energy_ceiling(masks, 7)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        raw = torch.rand(3, 7, 7, generator=gen) ** 8       # peaked random maps
        e = metrics.energy_pointing_game(cams.finalize(raw, (56, 56)), masks)
        assert (e <= ceiling + 1e-6).all()
    reference = metrics.resolution_ceiling(masks, 7)["energy"]
    assert (ceiling >= reference - 1e-6).all() and (ceiling > reference + 0.2).any()


def test_energy_ceiling_by_hand():
    # 2 x 2 grid on 4 x 4 pixels: upsampling a one-cell map at the top-left cell gives weights
    # [1, .75, .25, 0] along each axis; a mask on the top-left 2 x 2 pixels holds
    # (1 + .75)^2 = 3.0625 of the map's (1 + .75 + .25)^2 = 4 -> 0.765625
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    assert metrics.energy_ceiling(mask, 2).item() == pytest.approx(3.0625 / 4)


def test_pointing_ceiling_bounds_and_arguments():
    # a one-pixel object in the image corner: the nearest pixel where a 7 x 7 map can peak is
    # about (15, 15), 21 px away: out of reach within 15 px, within reach at 25 px
    mask = torch.zeros(1, 224, 224, dtype=torch.bool)
    mask[0, 0, 0] = True
    assert metrics.pointing_ceiling(mask, 7, tolerance_px=15).item() == 0.0
    assert metrics.pointing_ceiling(mask, 7, tolerance_px=25).item() == 1.0
    assert metrics.pointing_ceiling(mask, 224).item() == 1.0
    with pytest.raises(ValueError, match="expected an int >= 0"):
        metrics.pointing_ceiling(mask, 7, tolerance_px=-1)
    with pytest.raises(ValueError, match="grid"):
        metrics.energy_ceiling(mask, 0)


def test_gini_by_hand():
    one_pixel = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    assert metrics.gini(one_pixel).item() == pytest.approx(0.75)       # (n - 1) / n
    assert metrics.gini(torch.ones(1, 2, 2)).item() == pytest.approx(0.0)
    # values 0, 0, 1, 1: sum (2i - n - 1) x_i = (1 + 3) = 4; n sum x = 8 -> 0.5
    two = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert metrics.gini(two).item() == pytest.approx(0.5)
    x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(metrics.gini(x), metrics.gini(3 * x))          # scale invariant
    perm = x.flatten(2)[..., torch.randperm(25)].reshape(2, 1, 5, 5)
    assert torch.allclose(metrics.gini(x), metrics.gini(perm))           # order free
    assert metrics.gini(torch.zeros(1, 3, 3)).tolist() == [0.0]          # blank: as flat
    with pytest.raises(ValueError, match="maps"):
        metrics.gini(torch.zeros(3, 3))


def test_dilate_is_a_disc():
    m = torch.zeros(1, 21, 21, dtype=torch.bool)
    m[0, 10, 10] = True
    d = metrics.dilate(m, 3)[0]
    yy, xx = torch.meshgrid(torch.arange(21), torch.arange(21), indexing="ij")
    assert torch.equal(d, (yy - 10) ** 2 + (xx - 10) ** 2 <= 9)
    masks = masks_56()
    ref = torch.stack([metrics.hits_at(torch.full((56,), y), torch.arange(56),
                                       masks[:1].expand(56, -1, -1), 4) for y in range(56)])
    assert torch.equal(metrics.dilate(masks[:1], 4)[0], ref)
