"""The style generator's learned refiner: what it may change, its switch, and its ONNX export."""

from __future__ import annotations

import numpy as np
import torch

from bodydance.stages import refiner as R
from bodydance.stages.style import StyleGenerator, generator_planes
from bodydance_client import contract as C


def _planes(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    frame, background = torch.rand(1, 3, n, n, generator=g), torch.rand(1, 3, n, n, generator=g)
    seen = torch.zeros(1, 1, n, n)
    seen[..., 10:40, 10:40] = 1.0
    parts = torch.randint(0, C.NUM_PARTS, (1, 1, n, n), generator=g)
    parts[parts == R.HEAD] = C.PART_NAMES.index("torso")  # the refiner never edits near a head
    onehot = (parts == torch.arange(C.NUM_PARTS).reshape(1, -1, 1, 1)).float()
    refilled = torch.zeros(1, 1, n, n)
    style = torch.rand(1, 6, n, n, generator=g)
    generated = torch.ones(1, 1, n, n)
    generated[..., :, 50:] = 0.0
    return frame, background, seen, onehot, refilled, style, generated


def test_an_untrained_refiner_is_close_to_the_identity():
    frame, *rest = _planes()
    torch.manual_seed(0)
    with torch.no_grad():
        change = (R.FrameRefiner()(frame, *rest)[0] - frame).abs()
    assert 0 < change.max() < 0.05 and change.mean() < 0.01


def test_confidently_seen_and_uneditable_pixels_stay_the_warps(randomised):
    frame, background, seen, onehot, refilled, style, generated = _planes()
    with torch.no_grad():
        out, editable = randomised(R.FrameRefiner())(frame, background, seen, onehot, refilled, style, generated)
    assert editable[0, 0, :, :50 + R.RIM_PX].all() and not editable[0, 0, :, 50 + R.RIM_PX:].any()
    changed = (out - frame).abs().amax(1)[0] > 1e-6
    interior = torch.zeros_like(changed)
    interior[10 + R.EDGE_PX:40 - R.EDGE_PX, 10 + R.EDGE_PX:40 - R.EDGE_PX] = True
    assert not changed[interior].any()  # seen, away from unseen surface
    # not editable: neither the dancer nor the refilled plate, nor within RIM_PX of them
    assert not changed[:, 50 + R.RIM_PX:].any()
    assert changed[45:, :45].float().mean() > 0.5  # unseen and editable: the refiner does change these


def test_the_parameter_count_is_in_the_issues_range():
    assert 500_000 <= R.FrameRefiner().parameter_count() <= 1_000_000


def test_the_refined_generator_exports_to_onnx_with_parity(tmp_path, randomised):
    from bodydance_export.sample_inputs import sample_inputs
    from bodydance_export.steps import ONNX_OPSET, check_parity, export_onnx

    assert ONNX_OPSET <= 19  # GridSample's mode names change at 20
    generator = StyleGenerator(randomised(R.FrameRefiner(), 1)).eval()
    path = export_onnx(generator, C.STYLE_GENERATOR, sample_inputs(C.STYLE_GENERATOR, 64, batch=2, seed=1),
                       tmp_path / "generator.onnx")
    report = check_parity(generator, C.STYLE_GENERATOR, path, sample_inputs(C.STYLE_GENERATOR, 64, batch=3, seed=2))
    assert {r["output"] for r in report} == {"frame", "frame_alpha"}


def test_the_planes_mark_the_refilled_plate_and_the_dancer():
    n = 16
    source = torch.rand(1, 3, n, n)
    background = source.clone()
    background[..., :4, :4] += 0.1
    parsing = torch.zeros(1, 1, n, n, dtype=torch.int32)
    parsing[..., 8:, 8:] = 2
    planes = generator_planes(source, background, torch.rand(1, C.NUM_PARTS, C.STYLE_DIM), torch.zeros(1, 2, n, n),
                              torch.ones(1, 1, n, n), parsing)
    assert planes.refilled[0, 0, :4, :4].all() and planes.refilled.sum() == 16
    assert planes.generated.sum() == 16 + 64 and np.allclose(planes.part_style[0, :, 9, 9].numpy(),
                                                             planes.part_style[0, :, 12, 12].numpy())


def _torso_only(n):
    parts = torch.full((1, 1, n, n), C.PART_NAMES.index("torso"), dtype=torch.long)
    return (parts == torch.arange(C.NUM_PARTS).reshape(1, -1, 1, 1)).float()


def _saturated(candidate: str) -> R.FrameRefiner:
    """A refiner whose mixing weights all go to one of :data:`~bodydance.stages.refiner.CANDIDATES`."""
    refiner = R.FrameRefiner()
    with torch.no_grad():
        refiner.head.weight.zero_()
        refiner.head.bias.copy_(torch.tensor([30.0 if c == candidate else -30.0 for c in R.CANDIDATES]))
    return refiner


def test_a_saturated_blur_weight_gives_the_blurred_frame_where_the_refiner_may_edit():
    frame, background, seen, _, refilled, style, generated = _planes()
    onehot = _torso_only(frame.shape[-1])  # no head: the head is never smoothed
    refiner = _saturated("blur")
    with torch.no_grad():
        out, _ = refiner(frame, background, seen, onehot, refilled, style, generated)
        blurred = refiner.smoothed(frame)
    _, reach = R.edit_reach(seen, generated, onehot)
    inside, outside = reach[0, 0] > 0.5, reach[0, 0] < 0.5
    assert torch.allclose(out[0][:, inside], blurred[0][:, inside], atol=1e-5)
    assert torch.equal(out[0][:, outside], frame[0][:, outside])
    assert (blurred - frame).abs().mean() > 0.05  # the blur does change a noisy frame
    flat = torch.full((1, 3, 32, 32), 0.4)
    assert torch.allclose(refiner.smoothed(flat), flat, atol=1e-6)  # and keeps a flat one, edges too


def test_the_refiner_invents_no_colour(randomised):
    """Every refined pixel is a convex mix of the frame, its blur, its part's colour and the plate:
    a grey photo stays grey, and no channel leaves the candidates' range."""
    frame, background, seen, onehot, refilled, style, generated = _planes(seed=3)
    grey = lambda x: x.mean(1, keepdim=True).expand_as(x).contiguous()  # noqa: E731
    frame, background = grey(frame), grey(background)
    style = torch.cat([grey(style[:, :3]), grey(style[:, 3:])], 1)
    refiner = randomised(R.FrameRefiner())
    with torch.no_grad():
        out, _ = refiner(frame, background, seen, onehot, refilled, style, generated)
        candidates = torch.stack([frame, refiner.smoothed(frame), style[:, :3], background])
    assert (out - frame).abs().amax() > 0.05  # it does change the frame
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 0], out[:, 2], atol=1e-6)
    assert (out >= candidates.amin(0) - 1e-6).all() and (out <= candidates.amax(0) + 1e-6).all()


def test_the_background_shows_through_only_at_the_dancers_outline():
    frame, background, _, _, refilled, style, _ = _planes()
    n = frame.shape[-1]
    parts = torch.zeros(1, 1, n, n, dtype=torch.long)
    parts[..., 10:50, 10:50] = C.PART_NAMES.index("torso")
    onehot = (parts == torch.arange(C.NUM_PARTS).reshape(1, -1, 1, 1)).float()
    generated = (parts > 0).float()
    with torch.no_grad():  # nothing seen: the whole dancer and its rim are in reach
        out, _ = _saturated("background")(frame, background, torch.zeros_like(generated), onehot, refilled, style, generated)
    deep = slice(10 + R.RIM_PX + 1, 50 - R.RIM_PX - 1)
    assert torch.equal(out[..., deep, deep], frame[..., deep, deep])  # a body mixed with the plate is translucent
    assert torch.allclose(out[..., 10:12, 10:50], background[..., 10:12, 10:50])  # its outline may take the plate


def test_the_refilled_plate_away_from_the_dancer_stays_the_plates(randomised):
    frame, background, seen, _, _, style, _ = _planes()
    n = frame.shape[-1]
    parts = torch.zeros(1, 1, n, n, dtype=torch.long)
    parts[..., 10:40, 10:30] = C.PART_NAMES.index("torso")  # the dancer; the photo's person stood right of it
    onehot = (parts == torch.arange(C.NUM_PARTS).reshape(1, -1, 1, 1)).float()
    refilled = torch.zeros(1, 1, n, n)
    refilled[..., 10:40, 30:60] = 1.0
    generated = ((parts > 0).float() + refilled).clamp(max=1.0)
    with torch.no_grad():
        out, editable = randomised(R.FrameRefiner())(frame, background, torch.zeros_like(seen), onehot, refilled, style, generated)
    changed = (out - frame).abs().amax(1)[0] > 1e-6
    assert editable[0, 0, 10:40, 30:60].all()  # the frame still says the plate there was generated
    assert not changed[:, 30 + R.RIM_PX + 1:].any()  # but the refiner leaves it as the plate has it
    assert changed[10:40, 10:30].float().mean() > 0.5


def test_the_head_and_its_outline_are_never_edited():
    frame, background, seen, _, refilled, style, generated = _planes()
    n = frame.shape[-1]
    onehot = _torso_only(n)
    onehot[:, :, 20:40, 20:40] = 0.0
    onehot[:, C.PART_NAMES.index("head"), 20:40, 20:40] = 1.0
    for candidate in R.CANDIDATES[1:]:
        with torch.no_grad():
            out, _ = _saturated(candidate)(frame, background, torch.zeros_like(seen), onehot, refilled, style, generated)
        changed = (out - frame).abs().amax(1)[0] > 1e-6
        assert not changed[20 - R.RIM_PX:40 + R.RIM_PX, 20 - R.RIM_PX:40 + R.RIM_PX].any(), candidate
        if candidate != "background":  # the plate only reaches the outline; this torso's is the frame's edge
            assert changed[:10, :45].all(), candidate  # the torso, unseen, is remixed
