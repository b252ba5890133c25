"""The background plate's learned inpainter: it changes only the hole, its weights load, and it exports to ONNX
inside ``style_encoder``."""

from __future__ import annotations

import torch

from bodydance.stages import generator_switch, plate_inpainter as P
from bodydance.stages.reconstruction import plate
from bodydance.stages.style import StyleEncoder
from bodydance_client import contract as C

N = 64


def _photo_and_mask(n=N):
    g = torch.Generator().manual_seed(3)
    photo = (torch.rand(1, 3, n, n, generator=g) * 255).to(torch.uint8)
    mask = torch.zeros(1, 1, n, n)
    mask[..., 20:50, 24:40] = 1.0
    return photo, mask


def test_the_hole_is_the_reconstructions_hole_grown_to_a_square():
    _, mask = _photo_and_mask()
    hole = P.person_hole(mask, N)[0, 0].numpy() > 0.5
    disc = plate.person_hole(mask[0, 0].numpy())
    assert (hole | ~disc).all()  # covers every pixel the Telea fill refilled
    assert hole.sum() - disc.sum() <= 4 * 4  # and only the corners more


def test_the_background_is_the_telea_fill_outside_the_hole_and_refined_inside(randomised):
    photo, mask = _photo_and_mask()
    filled = torch.from_numpy(plate.inpaint(photo[0].permute(1, 2, 0).numpy(), plate.person_hole(mask[0, 0].numpy()))
                              ).permute(2, 0, 1)[None].contiguous()
    parsing = (mask > 0.5).to(torch.uint8) * 2
    with torch.no_grad():
        style, telea = StyleEncoder(N)(photo, mask, parsing, filled)
        style_learned, learned = StyleEncoder(N, randomised(P.PlateInpainter()))(photo, mask, parsing, filled)
    assert telea.dtype == torch.uint8 and torch.equal(telea, filled)  # no inpainter: the fill as it came
    assert torch.equal(style, style_learned)  # the codes do not depend on the plate
    hole = P.person_hole(mask, N)[0, 0] > 0.5
    changed = (learned.int() - filled.int()).abs().amax(1)[0] > 0
    assert not changed[~hole].any()  # outside the hole: the photo's own pixels
    assert changed[hole].float().mean() > 0.5  # inside: the network's residual


def test_an_untrained_inpainter_starts_at_the_fill():
    torch.manual_seed(0)
    filled, hole = torch.rand(1, 3, N, N), P.person_hole(_photo_and_mask()[1], N)
    with torch.no_grad():
        change = (P.PlateInpainter()(filled, hole) - filled).abs()
    assert 0 < change.max() < 0.05


def test_the_committed_weights_load():
    assert generator_switch.PLATE_WEIGHTS.exists()
    assert P.read_inpainter().parameter_count() == P.PlateInpainter().parameter_count()


def test_the_encoder_with_the_inpainter_exports_to_onnx_with_parity(tmp_path, randomised):
    from bodydance_export.sample_inputs import sample_inputs
    from bodydance_export.steps import check_parity, export_onnx

    encoder = StyleEncoder(N, randomised(P.PlateInpainter(), 1)).eval()
    path = export_onnx(encoder, C.STYLE_ENCODER, sample_inputs(C.STYLE_ENCODER, N, batch=1, seed=1),
                       tmp_path / "encoder.onnx")
    report = check_parity(encoder, C.STYLE_ENCODER, path, sample_inputs(C.STYLE_ENCODER, N, batch=1, seed=2))
    assert {r["output"] for r in report} == {"region_style", "background"}
