"""Stage 2 stand-ins on their own: the source parser and the parsing prior, on cases whose answer is known."""

import numpy as np
import torch

from bodydance.skeleton import REST_JOINTS, project
from bodydance.stages.parsing import ParsingPrior, SourceParser
from bodydance_client.contract import PART_NAMES

N = 96
CAMERA = np.array([0.9, 0.0, 0.05], np.float32)
PART = {name: i for i, name in enumerate(PART_NAMES)}


def _pixel(joint: int):
    """(row, col) of a rest-pose joint seen through CAMERA."""
    x, y = project(REST_JOINTS[joint], CAMERA)
    return int((y + 1) * N / 2), int((x + 1) * N / 2)


def _identity_flow():
    centres = (torch.arange(N, dtype=torch.float32) * 2 + 1) / N - 1
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xx, yy])[None]


def _parse(mask):
    with torch.no_grad():
        return SourceParser(N)(torch.from_numpy(mask)[None, None], torch.zeros(1, 10), torch.zeros(1, 24, 3),
                               torch.from_numpy(CAMERA)[None])


def _rest_silhouette():
    _, depth = _parse(np.ones((N, N), np.float32))
    return depth[0, 0].numpy() > -100


def test_source_parser_labels_the_body_parts_where_the_skeleton_is():
    parsing, depth = _parse(_rest_silhouette().astype(np.float32))
    labels = parsing[0, 0].numpy()
    assert labels[_pixel(15)] == PART["head"]  # joint 15: head
    assert labels[_pixel(3)] == PART["torso"]  # spine1
    assert labels[_pixel(22)] == PART["hand"] and labels[_pixel(23)] == PART["hand"]
    assert labels[_pixel(4)] == PART["shin_foot"] or labels[_pixel(4)] == PART["thigh"]  # a knee joins the two
    # the body's front surface faces the camera (+Z) where it is drawn; -1000 where it is not
    body = depth[0, 0].numpy() > -100
    assert depth[0, 0].numpy()[_pixel(3)] > 0.0
    assert np.all(depth[0, 0].numpy()[~body] == -1000.0)


def test_source_parser_fills_the_person_mask_and_nothing_outside_it():
    silhouette = _rest_silhouette()
    mask = silhouette.copy()
    _, head_col = _pixel(15)
    top = int(np.argmax(silhouette[:, head_col]))
    mask[top - 5:top, head_col - 4:head_col + 5] = True  # hair: 5 px above the head, within the growth's reach
    parsing, _ = _parse(mask.astype(np.float32))
    labels = parsing[0, 0].numpy()
    assert np.all(labels[~mask] == 0)
    assert np.all(labels[mask] > 0)  # grown to every person pixel
    hair = mask & ~silhouette
    assert np.mean(labels[hair] == PART["head"]) > 0.9  # hair takes the label of the body part it grows from


def test_parsing_prior_keeps_rendered_parts_and_carries_only_matching_labels_beside_the_body():
    target_parts = torch.zeros(1, 1, N, N, dtype=torch.int32)
    target_parts[..., 40:60, 40:60] = PART["torso"]
    target_parts[..., 40:60, 60:66] = PART["upper_arm"]
    source = target_parts.clone()
    source[..., 36:40, 40:60] = PART["torso"]  # loose shirt above the torso: same part as the nearest body
    source[..., 40:60, 66:70] = PART["torso"]  # torso label beside the arm: dragged along, must be dropped
    source[..., 20:30, 20:30] = PART["head"]  # far from the body: beyond the prior's reach
    with torch.no_grad():
        out = ParsingPrior(N)(source, target_parts, _identity_flow())[0, 0].numpy()
    assert np.array_equal(out[40:60, 40:66], target_parts[0, 0, 40:60, 40:66].numpy())
    assert np.all(out[36:40, 40:54] == PART["torso"])  # (nearer the arm, the arm is the nearest part)
    assert np.all(out[40:60, 66:70] == 0)
    assert np.all(out[20:30, 20:30] == 0)


def test_parsing_prior_follows_the_flow():
    target_parts = torch.zeros(1, 1, N, N, dtype=torch.int32)
    target_parts[..., 40:60, 40:60] = PART["torso"]
    source = torch.zeros_like(target_parts)
    source[..., 36:40, 50:70] = PART["torso"]  # the shirt's hem, 10 px right of where the target wants it
    flow = _identity_flow()
    flow[:, 0] += 10 * 2.0 / N  # every target pixel reads the source 10 px to its right
    with torch.no_grad():
        out = ParsingPrior(N)(source, target_parts, flow)[0, 0].numpy()
    assert np.all(out[36:40, 41:59] == PART["torso"])


def test_parsing_prior_carries_nothing_where_the_flow_has_no_source():
    """Flow -2 (no source pixel) samples the photo's border; a person at the border must not be carried
    beside the body there."""
    source = torch.full((1, 1, N, N), PART["torso"], dtype=torch.uint8)  # the person fills the photo, border too
    target = torch.zeros(1, 1, N, N, dtype=torch.int32)
    target[..., 30:60, 40:56] = PART["torso"]
    flow = _identity_flow()
    flow[..., :, 56:] = -2.0  # right of the torso: no source
    with torch.no_grad():
        parsing = ParsingPrior(N)(source, target, flow)[0, 0].numpy()
    assert (parsing[30:60, 56:60] == 0).all()  # beside the body, no source: nothing carried
    assert (parsing[30:60, 36:40] == PART["torso"]).all()  # beside it with a source: carried as before


def test_parsing_prior_carries_only_the_chosen_parts_past_the_body():
    """With CARRIED_PARTS set, a limb's pixels past the body are dropped and the head's (hair) kept."""
    target_parts = torch.zeros(1, 1, N, N, dtype=torch.int32)
    target_parts[..., 20:30, 40:50] = PART["head"]
    target_parts[..., 40:60, 60:66] = PART["upper_arm"]
    source = target_parts.clone()
    source[..., 17:20, 40:50] = PART["head"]  # hair above the head
    source[..., 40:60, 66:69] = PART["upper_arm"]  # the photo's arm, wider than the fitted one
    prior = ParsingPrior(N)
    with torch.no_grad():
        prior.CARRIED_PARTS = None
        every_part = prior(source, target_parts, _identity_flow())[0, 0].numpy()
        prior.CARRIED_PARTS, prior.NEAR_REACH_PX = ("head", "torso", "thigh", "shin_foot"), 0
        not_arms = prior(source, target_parts, _identity_flow())[0, 0].numpy()
        prior.NEAR_REACH_PX = 1
        arms_near = prior(source, target_parts, _identity_flow())[0, 0].numpy()
    assert np.all(every_part[40:60, 66:69] == PART["upper_arm"])
    assert np.all(not_arms[40:60, 66:69] == 0)
    assert np.all(arms_near[41:59, 66] == PART["upper_arm"]) and np.all(arms_near[40:60, 67:69] == 0)
    assert np.all(not_arms[17:20, 40:50] == PART["head"]) and np.all(every_part[17:20, 40:50] == PART["head"])
    assert np.array_equal(not_arms[40:60, 60:66], target_parts[0, 0, 40:60, 60:66].numpy())  # the body stays


def test_growing_labels_in_two_steps_equals_growing_them_once():
    """The parsing prior grows the target parts 3 px, then on to its reach: the same labels as one growth."""
    from bodydance.geometry import grow_labels
    from bodydance_client.contract import NUM_PARTS

    parts = torch.randint(0, NUM_PARTS, (1, 1, N, N), generator=torch.Generator().manual_seed(3))
    parts[torch.rand(parts.shape, generator=torch.Generator().manual_seed(4)) < 0.97] = 0  # sparse seeds
    once = grow_labels(parts, NUM_PARTS, 8)
    twice = grow_labels(grow_labels(parts, NUM_PARTS, 3), NUM_PARTS, 5)
    assert torch.equal(once, twice) and (once > 0).float().mean() > 0.5
