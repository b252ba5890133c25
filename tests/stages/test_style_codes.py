"""The learned style codes: where they sit in region_style, what they read, their KL term, how the
refiner's fifth candidate uses them, their weights file and their ONNX export."""

from __future__ import annotations

import pytest
import torch

from bodydance.stages import refiner as R
from bodydance.stages import style_codes as S
from bodydance.stages.style import StyleEncoder, StyleGenerator
from bodydance_client import contract as C

N = 64
TORSO, HAND = C.PART_NAMES.index("torso"), C.PART_NAMES.index("hand")


def _photo(torso_colour=(0.8, 0.2, 0.1), seed=0):
    """A photo ``[1,3,N,N]`` in [0,1], its parsing ``[1,1,N,N]`` uint8 (head, torso, no hands) and mask."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, N, N, generator=g) * 0.2
    parsing = torch.zeros(1, 1, N, N, dtype=torch.uint8)
    parsing[..., 8:20, 24:40] = C.PART_NAMES.index("head")
    parsing[..., 20:50, 18:46] = TORSO
    image[..., 20:50, 18:46] = torch.tensor(torso_colour).reshape(1, 3, 1, 1)
    return image, parsing, (parsing > 0).float()


def test_the_codes_take_the_contracts_spare_dimensions_and_leave_the_statistics(randomised):
    image, parsing, mask = _photo()
    plain = StyleEncoder(N).region_style(image, mask, parsing)
    encoder = randomised(S.RegionCodeEncoder())
    coded = StyleEncoder(N, codes=encoder).region_style(image, mask, parsing)
    assert coded.shape == plain.shape == (1, C.NUM_PARTS, C.STYLE_DIM)
    assert torch.equal(coded[..., :S.FIRST_CODE_DIM], plain[..., :S.FIRST_CODE_DIM])
    assert not plain[..., S.CODE_DIMS].any()
    mean, _ = encoder(image, S.parts_onehot(parsing))
    assert torch.allclose(coded[..., S.CODE_DIMS], mean) and mean.abs().amax() > 1e-3  # serving takes the mean


def test_a_part_the_photo_does_not_show_gets_its_identitys_code_and_a_shown_one_reads_the_photo(randomised):
    encoder = randomised(S.RegionCodeEncoder(), 2)
    codes = {}
    for colour in ((0.8, 0.2, 0.1), (0.1, 0.3, 0.9)):
        image, parsing, _ = _photo(colour)
        codes[colour], _ = encoder(image, S.parts_onehot(parsing))
    red, blue = codes.values()
    assert torch.allclose(red[0, HAND], blue[0, HAND])  # no hand in either photo
    assert (red[0, TORSO] - blue[0, TORSO]).abs().amax() > 1e-3  # the torso's colour changed


def test_the_kl_term_is_zero_at_the_prior_and_the_draws_follow_the_seed():
    zeros = torch.zeros(2, C.NUM_PARTS, S.CODE_DIM)
    assert float(S.kl_to_prior(zeros, zeros)) == 0.0
    assert float(S.kl_to_prior(zeros + 1.0, zeros)) == pytest.approx(0.5 * S.CODE_DIM)
    assert float(S.kl_to_prior(zeros, zeros - 2.0)) > 0.0
    a = S.sample_codes(zeros, zeros, torch.Generator().manual_seed(5))
    b = S.sample_codes(zeros, zeros, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.std() > 0.5


def _refiner_inputs(seed=0, grey=False):
    from test_refiner import _planes

    frame, background, seen, onehot, refilled, style, generated = _planes(seed=seed)
    code = torch.randn(1, S.CODE_DIM, 1, 1, generator=torch.Generator().manual_seed(seed)).expand(-1, -1, *frame.shape[2:])
    if grey:
        flat = lambda x: x.mean(1, keepdim=True).expand_as(x).contiguous()  # noqa: E731
        frame, background, style = flat(frame), flat(background), torch.cat([flat(style[:, :3]), flat(style[:, 3:])], 1)
    return frame, background, seen, onehot, refilled, style, generated, code


def test_an_untrained_styled_colour_is_the_parts_mean():
    frame, background, seen, onehot, refilled, style, generated, code = _refiner_inputs()
    refiner = R.FrameRefiner(S.CODE_DIM)
    assert refiner.candidates[-1] == R.STYLED
    with torch.no_grad():
        assert torch.allclose(refiner.styled_colour(style, code), style[:, :3].clamp(0, 1))
        change = (refiner(frame, background, seen, onehot, refilled, style, generated, code)[0] - frame).abs()
    assert change.mean() < 0.01  # next to the identity, as the refiner without codes starts


def test_a_refiner_with_codes_keeps_a_grey_photo_grey_and_its_reach(randomised):
    frame, background, seen, onehot, refilled, style, generated, code = _refiner_inputs(seed=3, grey=True)
    refiner = randomised(R.FrameRefiner(S.CODE_DIM))
    with torch.no_grad():
        out, _ = refiner(frame, background, seen, onehot, refilled, style, generated, code)
        styled = refiner.styled_colour(style, code)
        alone, _ = randomised(R.FrameRefiner())(frame, background, seen, onehot, refilled, style, generated)
    assert (styled - style[:, :3]).abs().amax() > 0.02  # the code does move the part's colour
    assert (out - frame).abs().amax() > 0.05
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 0], out[:, 2], atol=1e-6)
    # what it may change is what the refiner without codes may change
    assert torch.equal((out - frame).abs().amax(1) > 1e-6, (alone - frame).abs().amax(1) > 1e-6)


def test_a_jointly_trained_file_loads_both_halves_and_a_plain_one_has_no_codes(tmp_path, monkeypatch):
    from bodydance.training.loop import export_weights
    from bodydance.training.refiner_training import StyledRefiner

    joint = export_weights(StyledRefiner(), tmp_path / "joint.safetensors")
    plain = export_weights(R.FrameRefiner(), tmp_path / "plain.safetensors")
    assert R.read_refiner(joint).code_dim == S.CODE_DIM and isinstance(R.read_code_encoder(joint), S.RegionCodeEncoder)
    assert R.read_refiner(plain).code_dim == 0 and R.read_code_encoder(plain) is None
    monkeypatch.setenv("BODYDANCE_GENERATOR", "deterministic")
    assert R.load_code_encoder(joint) is None
    monkeypatch.setenv("BODYDANCE_GENERATOR", "learned")
    assert isinstance(R.load_code_encoder(joint), S.RegionCodeEncoder) and R.load_code_encoder(plain) is None


def test_the_encoder_with_codes_and_the_generator_reading_them_export_with_parity_and_fp16(tmp_path, randomised):
    from bodydance_export.sample_inputs import sample_inputs
    from bodydance_export.steps import check_fp16, check_parity, export_onnx

    encoder = StyleEncoder(N, codes=randomised(S.RegionCodeEncoder(), 1)).eval()
    generator = StyleGenerator(randomised(R.FrameRefiner(S.CODE_DIM), 1)).eval()
    for module, contract in ((encoder, C.STYLE_ENCODER), (generator, C.STYLE_GENERATOR)):
        path = export_onnx(module, contract, sample_inputs(contract, N, batch=2, seed=1), tmp_path / f"{contract.name}.onnx")
        inputs = sample_inputs(contract, N, batch=2, seed=2)
        assert check_parity(module, contract, path, inputs)
        assert check_fp16(module, contract, inputs)
