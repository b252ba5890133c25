"""Training the style generator's refiner on the data engine's pairs: resumable, seeded, logged.

A step draws ``batch // 2`` target poses, each with its dance's next frame, and one ``crop x crop``
window around the pose's person for both (the network is convolutional, so it trains on crops and
runs on the whole frame), and minimises

* L1 and squared error (what PSNR scores) on the person and their rim, three times as heavy where
  the photo never showed the surface,
* ``1 - SSIM`` there (7 x 7 box windows),
* L1 between image gradients (so filled surface is not left flat),

all on the truth of pose B, and the seed's *bidirectional flow constraint* between each pose and its
next frame along the renderer's exact surface flow (:func:`temporal_loss`). With ``style_codes`` the
region code encoder (:mod:`bodydance.stages.style_codes`) trains with it (:class:`StyledRefiner`): the
photo's parts are encoded to Gaussians, a code is sampled per part (one for a pose and its next
frame: the same person) and the refiner reads it, plus a KL term towards N(0, I). The synthetic people
wear saturated colours with skin on the hands; real photos may be grey or colour-cast, so each drawn
pair has its colours recoloured the same way in every image and in its part statistics
(:func:`recolour`). Checkpoints, resuming and the log are :mod:`bodydance.training.loop`'s.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from bodydance.stages.refiner import FrameRefiner
from bodydance.stages.style import generator_planes, part_planes
from bodydance.stages.style_codes import CODE_DIM, RegionCodeEncoder, kl_to_prior, parts_onehot, sample_codes
from bodydance.stages.weights import parameter_count
from bodydance.training.loop import train_resumably
from bodydance.training.pairs import NEXT, TEMPORAL_FLOWS, has_source_parsing

UNSEEN_WEIGHT = 3.0
# Beside L1 (whose optimum is the median) the squared error (the mean; what PSNR scores) leads: at 2.0
# the held-out person gained 0.07 dB, at 10.0 0.24 dB, with the same SSIM gain.
W_SQUARED = 10.0
W_SSIM = 0.3
W_GRADIENT = 0.2
# At 8 the constraint's term is about a quarter of the total; against 0 (one run each) it cost 0.04 dB on
# the held-out person and took 0.08 levels off the change error along the flow.
W_TEMPORAL = 8.0
# The style codes' KL term: small beside the image losses (about 0.6 in all), so the codes carry what
# the photo shows and are only kept from drifting, as SPADE keeps its KL weight small.
W_KL = 1e-4


@dataclasses.dataclass
class TrainingSettings:
    steps: int = 1500
    batch: int = 8
    crop: int = 128  # a multiple of 16
    learning_rate: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 50
    squared_weight: float = W_SQUARED  # the squared error's weight in the loss (what PSNR scores)
    grey_share: float = 0.2  # pairs turned grey (after the channel shuffle)
    shuffle_channels: bool = True  # RGB channels in a random order per pair
    temporal_weight: float = W_TEMPORAL  # the bidirectional flow constraint's weight (0: reconstruction alone)
    style_codes: bool = False  # train the region code encoder with the refiner (StyledRefiner)
    kl_weight: float = W_KL


# Rec. 601 luma, as the skin detector and OpenCV's grey conversion weigh RGB.
LUMA = (0.299, 0.587, 0.114)


def recolour(images, part_style, order, grey: bool):
    """Images ``[B,3,H,W]`` with their channels taken in ``order`` (then made grey), and ``part_style``
    ``[B,6,H,W]`` (mean, std RGB) to match. Means are linear in the image, so theirs are exact; the grey
    std is the luma-weighted sum of the channels' stds (exact when the channels move together, an
    upper bound otherwise)."""
    order = list(order)
    images = [image[:, order] for image in images]
    mean, std = part_style[:, :3][:, order], part_style[:, 3:][:, order]
    if grey:
        weights = torch.tensor(LUMA).reshape(1, 3, 1, 1)
        luma = lambda x: (x * weights).sum(1, keepdim=True).expand(-1, 3, -1, -1)  # noqa: E731
        images, mean, std = [luma(image) for image in images], luma(mean), luma(std)
    return images, torch.cat([mean, std], 1)


class StyledRefiner(torch.nn.Module):
    """The refiner trained together with the region code encoder; its weights file holds both halves
    under ``codes.`` and ``refiner.`` (:func:`bodydance.stages.refiner.read_refiner`,
    :func:`~bodydance.stages.refiner.read_code_encoder`)."""

    def __init__(self):
        super().__init__()
        self.codes = RegionCodeEncoder()
        self.refiner = FrameRefiner(CODE_DIM)

    def parameter_count(self) -> int:
        return parameter_count(self)


def pair_tensors(shard: Dict[str, np.ndarray], k: int, prefix: str = "") -> Dict[str, torch.Tensor]:
    """Pair ``k`` of a shard as ``[1,...]`` float tensors: the refiner's inputs, the truth and loss masks;
    with ``prefix`` :data:`~bodydance.training.pairs.NEXT`, those of the pose's next dance frame."""
    image = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()[None] / 255.0  # noqa: E731
    pose = lambda key: shard[prefix + key][k]  # noqa: E731
    source, background = image(shard["source_image"]), image(shard["background"])
    planes = generator_planes(source, background, torch.from_numpy(shard["region_style"])[None],
                              torch.from_numpy(pose("flow")).float()[None],
                              torch.from_numpy(pose("visibility")).float()[None],
                              torch.from_numpy(pose("target_parsing").astype(np.int32))[None])
    truth_person = torch.from_numpy(pose("truth_person"))[None, None].float()
    unseen = truth_person * (1.0 - torch.from_numpy(pose("covisible"))[None, None].float())
    # The loss looks at the truth's person, ours, and a rim of 4 px around both (misplaced edges).
    region = F.max_pool2d(torch.maximum(truth_person, planes.person), 9, 1, 4)
    return {"frame": image(pose("frame").transpose(2, 0, 1)), "background": background,
            "planes": planes.refiner_inputs(), "truth": image(pose("truth").transpose(2, 0, 1)),
            "region": region, "unseen": unseen, "source": source}


def _crop_window(region: torch.Tensor, crop: int, rng: np.random.Generator):
    """A ``crop``-px window (top, left) holding a random pixel of ``region`` ``[1,1,N,N]``."""
    n = region.shape[-1]
    rows, cols = np.nonzero(region[0, 0].numpy() > 0.5)
    if len(rows) == 0:
        return int(rng.integers(0, n - crop + 1)), int(rng.integers(0, n - crop + 1))
    i = int(rng.integers(len(rows)))
    top = int(np.clip(rows[i] - rng.integers(crop // 4, 3 * crop // 4), 0, n - crop))
    left = int(np.clip(cols[i] - rng.integers(crop // 4, 3 * crop // 4), 0, n - crop))
    return top, left


def _surface_flow_in_window(shard, k: int, keys, top: int, left: int, crop: int, flip: bool):
    """A shard's exact surface flow ``keys`` (flow, shown) for pose ``k``, in the crop's pixels:
    (``[1,2,c,c]`` (col, row) px, ``[1,1,c,c]`` 1 where the point shows in both frames and lands in the crop)."""
    flow_key, shown_key = keys
    rows, cols = slice(top, top + crop), slice(left, left + crop)
    flow = torch.from_numpy(shard[flow_key][k][rows, cols].astype(np.float32)).permute(2, 0, 1)[None]
    flow = flow - torch.tensor([left, top], dtype=torch.float32).reshape(1, 2, 1, 1)
    shown = torch.from_numpy(shard[shown_key][k][rows, cols])[None, None].float()
    if flip:
        flow, shown = flow.flip(-1), shown.flip(-1)
        flow = torch.cat([(crop - 1) - flow[:, :1], flow[:, 1:]], 1)
    lands = ((flow >= 0) & (flow <= crop - 1)).all(1, keepdim=True).float()
    return flow, shown * lands


def draw_batch(shards: List[dict], settings: TrainingSettings, step: int):
    """The step's batch: ``batch // 2`` target poses drawn, each with its dance's next frame (rows
    ``0..h-1`` the poses, ``h..2h-1`` their next frames), both cropped at one window, flipped and
    recoloured alike. -> (columns (frame, background, planes..., truth, region, unseen), the exact
    surface flows between the halves, in the crops' pixels: ``[(flow [h,2,c,c], shown [h,1,c,c])]``
    from the poses to their next frames, then back, and the photos the poses came from, whole,
    recoloured and flipped as their crops: (source ``[h,3,N,N]``, parts one-hot ``[h,P,N,N]``, or None
    where the shards hold no ``source_parsing``))."""
    rng = np.random.default_rng([settings.seed, step])
    items, temporal, sources = [], [], []
    for _ in range(settings.batch // 2):
        shard = shards[int(rng.integers(len(shards)))]
        k = int(rng.integers(len(shard["frame"])))
        pair, after = pair_tensors(shard, k), pair_tensors(shard, k, NEXT)
        top, left = _crop_window(pair["region"], settings.crop, rng)
        window = (slice(None), slice(None), slice(top, top + settings.crop), slice(left, left + settings.crop))
        flip = rng.random() < 0.5
        order = rng.permutation(3) if settings.shuffle_channels else range(3)
        grey = rng.random() < settings.grey_share
        for drawn in (pair, after):
            seen, onehot, refilled, part_style, generated = drawn["planes"]
            (frame, background, truth, source), part_style = recolour(
                [drawn["frame"], drawn["background"], drawn["truth"], drawn["source"]], part_style, order, grey)
            tensors = [frame, background, seen, onehot, refilled, part_style, generated, truth, drawn["region"],
                       drawn["unseen"]]
            tensors = [t[window] for t in tensors]
            items.append([t.flip(-1) if flip else t for t in tensors])
        temporal.append([_surface_flow_in_window(shard, k, keys, top, left, settings.crop, flip) for keys in TEMPORAL_FLOWS])
        if has_source_parsing(shard):
            parts = parts_onehot(torch.from_numpy(shard["source_parsing"])[None])
            sources.append([t.flip(-1) if flip else t for t in (source, parts)])
    # now and next were appended alternately: reorder to all poses, then all next frames
    items = items[0::2] + items[1::2]
    columns = [torch.cat(column) for column in zip(*items)]
    flows = [tuple(torch.cat(part) for part in zip(*(pose[d] for pose in temporal))) for d in range(2)]
    photos = tuple(torch.cat(column) for column in zip(*sources)) if len(sources) == len(temporal) else None
    return columns, flows, photos


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel SSIM ``[B,1,H,W]`` of images in [0, 1] (box windows, channels averaged)."""
    pad = window // 2
    mean = lambda x: F.avg_pool2d(x, window, 1, pad, count_include_pad=False)  # noqa: E731
    mu_a, mu_b = mean(a), mean(b)
    var_a, var_b = mean(a * a) - mu_a ** 2, mean(b * b) - mu_b ** 2
    cov = mean(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return value.mean(1, keepdim=True)


def losses(pred, truth, region, unseen, squared_weight: float = W_SQUARED) -> Dict[str, torch.Tensor]:
    weight = region * (1.0 + (UNSEEN_WEIGHT - 1.0) * unseen)
    total_weight = weight.sum().clamp_min(1.0)
    l1 = ((pred - truth).abs().mean(1, keepdim=True) * weight).sum() / total_weight
    squared = (((pred - truth) ** 2).mean(1, keepdim=True) * weight).sum() / total_weight
    ssim = ((1.0 - ssim_map(pred, truth)) * weight).sum() / total_weight

    def gradients(x):
        return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]

    (pdx, pdy), (tdx, tdy) = gradients(pred), gradients(truth)
    gradient = (((pdx - tdx).abs().mean(1, keepdim=True) * weight[..., :, 1:]).sum()
                + ((pdy - tdy).abs().mean(1, keepdim=True) * weight[..., 1:, :]).sum()) / (2 * total_weight)
    return {"l1": l1, "squared": squared, "ssim": ssim, "gradient": gradient,
            "total": l1 + squared_weight * squared + W_SSIM * ssim + W_GRADIENT * gradient}


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image [B,C,H,W]`` sampled at ``flow [B,2,H,W]`` (col, row) px, bilinear (pixel centres at integers)."""
    h, w = image.shape[-2:]
    grid = torch.stack([flow[:, 0] * (2.0 / (w - 1)) - 1.0, flow[:, 1] * (2.0 / (h - 1)) - 1.0], -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def temporal_loss(pred: torch.Tensor, truth: torch.Tensor, flows) -> torch.Tensor:
    """The bidirectional flow constraint: along the renderer's exact surface flow, from each pose to its
    next frame and back, a frame minus the other frame warped onto it should change as the truth does
    (L1 over RGB, mean over points shown in both). Matching the truth's change, not zero change, keeps
    the constraint from rewarding a frame for being flat: prints and shading resample and move too.
    ``pred``, ``truth`` ``[2h,3,c,c]`` (poses, then their next frames); ``flows`` as :func:`draw_batch`'s."""
    h = pred.shape[0] // 2
    directions = ((pred[:h], pred[h:], truth[:h], truth[h:]), (pred[h:], pred[:h], truth[h:], truth[:h]))
    total, count = pred.new_zeros(()), pred.new_zeros(())
    for (a, b, truth_a, truth_b), (flow, shown) in zip(directions, flows):
        change, truth_change = a - warp(b, flow), truth_a - warp(truth_b, flow)
        total = total + ((change - truth_change).abs().mean(1, keepdim=True) * shown).sum()
        count = count + shown.sum()
    return total / count.clamp_min(1.0)


def train(shards: List[dict], run: Path, settings: TrainingSettings, device: str = "cpu", progress=None) -> FrameRefiner:
    """Train (or resume) in ``run``; returns the refiner at ``settings.steps``."""

    def step_losses(model, step):
        columns, flows, photos = draw_batch(shards, settings, step)
        frame, background, *planes, truth, region, unseen = [t.to(device) for t in columns]
        if settings.style_codes:
            mean, log_variance = model.codes(*(t.to(device) for t in photos))
            # Noise drawn from the seed and the step, as the batch is: a resumed run trains the same codes.
            codes = sample_codes(mean, log_variance, torch.Generator().manual_seed(settings.seed * 1_000_003 + step))
            codes = torch.cat([codes, codes])  # a pose and its next frame: the same person, one code
            pred, _ = model.refiner(frame, background, *planes, part_planes(codes, planes[1]))
        else:
            pred, _ = model(frame, background, *planes)
        named = losses(pred, truth, region, unseen, settings.squared_weight)
        named["temporal"] = temporal_loss(pred, truth, [(f.to(device), s.to(device)) for f, s in flows])
        named["total"] = named["total"] + settings.temporal_weight * named["temporal"]
        if settings.style_codes:
            named["kl"] = kl_to_prior(mean, log_variance)
            named["total"] = named["total"] + settings.kl_weight * named["kl"]
        return named

    return train_resumably(StyledRefiner if settings.style_codes else FrameRefiner, run, settings, step_losses, device,
                           progress)
