"""Stage 3 stand-ins on their own: the style encoder and the style generator, on cases whose answer is known."""

import numpy as np
import torch

from bodydance.stages.style import HAND_PRIOR_SHARE, StyleEncoder, StyleGenerator
from bodydance_client.contract import NUM_PARTS, PART_NAMES, STYLE_DIM

N = 64
PART = {name: i for i, name in enumerate(PART_NAMES)}
RED, BLUE, GREEN = (0.9, 0.1, 0.1), (0.1, 0.2, 0.8), (0.2, 0.7, 0.3)


def _scene():
    """A green backdrop, a red torso and a blue head: (image [1,3,N,N], mask [1,1,N,N], parsing [1,1,N,N])."""
    image = torch.tensor(GREEN).reshape(1, 3, 1, 1).repeat(1, 1, N, N)
    parsing = torch.zeros(1, 1, N, N, dtype=torch.int32)
    parsing[..., 24:48, 24:40] = PART["torso"]
    parsing[..., 14:24, 28:36] = PART["head"]
    for part, colour in ((PART["torso"], RED), (PART["head"], BLUE)):
        where = (parsing == part).expand(1, 3, N, N)
        image[where] = torch.tensor(colour).reshape(3, 1, 1).expand(3, N, N)[where[0]]
    return image, (parsing > 0).float(), parsing


def test_style_encoder_codes_each_part_by_its_colour_and_area():
    image, mask, parsing = _scene()
    with torch.no_grad():
        style = StyleEncoder(N).region_style(image, mask, parsing)
    assert style.shape == (1, NUM_PARTS, STYLE_DIM)
    style = style[0].numpy()
    assert np.allclose(style[PART["torso"], :3], RED, atol=1e-4)
    assert np.allclose(style[PART["head"], :3], BLUE, atol=1e-4)
    assert np.allclose(style[PART["torso"], 3:6], 0.0, atol=1e-2)  # one flat colour: no spread
    torso_area, head_area = 24 * 16, 10 * 8
    assert np.isclose(style[PART["torso"], 6], torso_area / N ** 2, atol=1e-4)  # share of the image
    assert np.isclose(style[PART["head"], 6], head_area / N ** 2, atol=1e-4)
    # a part the photo never showed borrows the torso's colour
    assert np.allclose(style[PART["hand"], :3], RED, atol=1e-4)


SKIN, HAIR = (0.85, 0.65, 0.5), (0.1, 0.07, 0.05)


def _scene_with_a_face(face_colour):
    """_scene's head as hair around a face of ``face_colour`` (in the head's middle rows and columns)."""
    image, mask, parsing = _scene()
    image[..., 14:24, 28:36] = torch.tensor(HAIR).reshape(3, 1, 1)
    image[..., 17:23, 30:34] = torch.tensor(face_colour).reshape(3, 1, 1)
    return image, mask, parsing


def test_hands_the_photo_never_showed_take_the_face_s_skin_colour():
    with torch.no_grad():
        style = StyleEncoder(N).region_style(*_scene_with_a_face(SKIN))[0].numpy()
        grey = StyleEncoder(N).region_style(*_scene_with_a_face((0.5, 0.5, 0.5)))[0].numpy()
        StyleEncoder.UNSEEN_HAND_COLOUR = "torso"
        try:
            before = StyleEncoder(N).region_style(*_scene_with_a_face(SKIN))[0].numpy()
        finally:
            StyleEncoder.UNSEEN_HAND_COLOUR = "skin"
    assert np.allclose(style[PART["hand"], :3], SKIN, atol=1e-3)  # not the hair around the face
    assert np.allclose(style[PART["shin_foot"], :3], RED, atol=1e-4)  # other parts still take the torso's
    assert np.allclose(grey[PART["hand"], :3], RED, atol=1e-4)  # no skin in the face: the torso's, as before
    assert np.allclose(before[PART["hand"], :3], RED, atol=1e-4)


def test_a_few_dark_pixels_the_fit_calls_hand_are_pulled_towards_the_face_s_skin():
    """A helmet in front of the hand: the photo's only 'hand' pixels are black."""
    image, mask, parsing = _scene_with_a_face(SKIN)
    parsing[..., 50:52, 10:12] = PART["hand"]  # 4 px, as many as the prior's weight at N = 64
    image[..., 50:52, 10:12] = 0.0
    with torch.no_grad():
        style = StyleEncoder(N).region_style(image, (parsing > 0).float(), parsing)[0].numpy()
        StyleEncoder.HAND_STATISTICS = "plain"
        try:
            plain = StyleEncoder(N).region_style(image, (parsing > 0).float(), parsing)[0].numpy()
        finally:
            StyleEncoder.HAND_STATISTICS = "prior"
    assert np.allclose(plain[PART["hand"], :3], 0.0, atol=1e-4)
    prior_px = HAND_PRIOR_SHARE * N * N  # about 4
    assert np.allclose(style[PART["hand"], :3], np.array(SKIN) * prior_px / (prior_px + 4), atol=1e-3)


def _plate_inputs():
    image, mask, parsing = _scene()
    return image, mask, parsing, (torch.tensor(GREEN).reshape(1, 3, 1, 1).expand(1, 3, N, N).clone())


def _identity_flow():
    """``[1,2,N,N]`` NDC: every pixel copies the photo's own pixel."""
    centres = (torch.arange(N, dtype=torch.float32) * 2 + 1) / N - 1
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xx, yy])[None]


def test_style_generator_copies_seen_pixels_fills_unseen_ones_and_keeps_the_background():
    image, mask, parsing = _scene()
    with torch.no_grad():
        image, mask, parsing, background = _plate_inputs()
        style = StyleEncoder(N).region_style(image, mask, parsing)
        flow = _identity_flow()
        target = parsing.clone()
        target[..., 48:56, 24:32] = PART["hand"]  # body surface the photo never showed
        visibility = ((target > 0) & (target != PART["hand"])).float()
        visibility[..., 30:36, 26:38] = 0.0  # a hidden patch of the torso
        frame, alpha = StyleGenerator()(image, background, style, flow, visibility, target)
    assert frame.dtype == torch.uint8 and frame.shape == (1, N, N, 3)
    out = frame[0].numpy().astype(float) / 255
    assert np.allclose(out[16, 30], BLUE, atol=2 / 255)  # seen: the photo's own pixel
    assert np.allclose(out[33, 30], RED, atol=2 / 255)  # hidden torso: the torso's mean colour
    assert np.allclose(out[52, 28], RED, atol=2 / 255)  # unseen hand: borrowed torso colour
    assert np.allclose(out[5, 5], GREEN, atol=2 / 255)  # background stays the plate
    # alpha: where the frame is not the photo's own pixel (the dancer here; the photo's person stood inside it)
    assert alpha.dtype == torch.uint8 and alpha.shape == (1, N, N, 1)
    assert np.array_equal(alpha[0, ..., 0].numpy() == 255, (target[0, 0] > 0).numpy())


def test_frame_alpha_covers_where_the_photo_s_person_stood():
    image, mask, parsing = _scene()
    with torch.no_grad():
        image, mask, parsing, background = _plate_inputs()
        style = StyleEncoder(N).region_style(image, mask, parsing)
        moved = torch.roll(parsing, shifts=20, dims=3)  # the dancer stepped 20 px right
        flow = torch.zeros(1, 2, N, N)
        _, alpha = StyleGenerator()(image, background, style, flow, (moved > 0).float(), moved)
    alpha = alpha[0, ..., 0].numpy()
    stood = (parsing[0, 0] > 0).numpy() & ~(moved[0, 0] > 0).numpy()
    assert np.all(alpha[stood] == 255)  # the refilled plate differs from the photo there
    assert np.all(alpha[:5, :5] == 0) and np.all(alpha[-5:, -5:] == 0)  # untouched background


def test_a_seen_pixel_whose_flow_lands_off_the_photo_s_person_takes_its_part_colour():
    """The fitted outline reaches past the person: the flow of a pixel marked seen points at the
    photo's background. It must not paint a ghost of that background onto the dancer."""
    with torch.no_grad():
        image, mask, parsing, background = _plate_inputs()
        style = StyleEncoder(N).region_style(image, mask, parsing)
        flow = _identity_flow()
        target = parsing.clone()
        target[..., 24:48, 40:44] = PART["torso"]  # the dancer's torso is 4 px wider than the photo's person
        visibility = (target > 0).float()  # and the frame path calls all of it seen
        frame, _ = StyleGenerator()(image, background, style, flow, visibility, target)
        StyleGenerator.COPY_FROM_PERSON_ONLY = False
        try:
            ghost, _ = StyleGenerator()(image, background, style, flow, visibility, target)
        finally:
            StyleGenerator.COPY_FROM_PERSON_ONLY = True
    out, before = frame[0].numpy().astype(float) / 255, ghost[0].numpy().astype(float) / 255
    assert np.allclose(out[30:44, 40:44], RED, atol=2 / 255)  # the torso's colour, not the backdrop's
    assert np.allclose(before[30:44, 40:44], GREEN, atol=2 / 255)  # what copying every seen pixel gave
    assert np.allclose(out[30, 30], RED, atol=2 / 255) and np.allclose(out[16, 30], BLUE, atol=2 / 255)
