"""The learned half of the style encoder: a code per parsed region, regularised towards a Gaussian.

As in SPADE's VAE mode, an encoder turns what the photo shows of each part into the mean and log
variance of a Gaussian code; training samples the code and pulls its distribution towards N(0, I) with
a KL term, and serving takes the mean. The codes go where the contract keeps room for them:
``region_style[..., 7:16]`` (:data:`CODE_DIMS`), after the deterministic statistics (mean RGB, std RGB,
area), so the ensembles and the client do not change. The generator's refiner reads them back per
target pixel for *style biasing* (:class:`bodydance.stages.refiner.FrameRefiner` with ``code_dim``).

It runs once per photo inside ``style_encoder``'s ONNX graph, at a quarter of the working resolution.
Trained jointly with the refiner (:mod:`bodydance.training.refiner_training`); weights in the
refiner's safetensors file under ``codes.``. ``N`` must be a multiple of 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bodydance_client.contract import NUM_PARTS, STYLE_DIM

FIRST_CODE_DIM = 7  # region_style's mean RGB, std RGB and area come first
CODE_DIMS = slice(FIRST_CODE_DIM, STYLE_DIM)
CODE_DIM = STYLE_DIM - FIRST_CODE_DIM  # 9
WIDTH = 32
HIDDEN = 64
DOWNSCALE = 4  # the encoder sees the photo at N/4
LOG_VARIANCE_AT_START = -4.0  # a standard deviation of 0.14 per code dimension


class RegionCodeEncoder(torch.nn.Module):
    """(source_image ``[B,3,N,N]`` [0,1], parts_onehot ``[B,P,N,N]`` {0,1}: the photo's parsing)
    -> (mean ``[B,P,CODE_DIM]``, log_variance ``[B,P,CODE_DIM]``).

    Four 3x3 convolutions over the photo and its parts at N/4 (a receptive field of 9 cells, 36 px at
    256), then each part's features pooled with a learned per-pixel weight in (0, 1): the fit's part
    outline reaches onto background and neighbouring parts, and the weight can learn to pass over such
    pixels where plain statistics count them. A small MLP with the part's identity makes the Gaussian;
    a part the photo does not show pools nothing and gets the code its identity alone predicts.
    """

    def __init__(self):
        super().__init__()
        layers, c_in = [], 3 + NUM_PARTS
        for _ in range(4):
            layers += [torch.nn.Conv2d(c_in, WIDTH, 3, 1, 1), torch.nn.LeakyReLU(0.1)]
            c_in = WIDTH
        self.features = torch.nn.Sequential(*layers)
        self.attention = torch.nn.Conv2d(WIDTH, 1, 1)
        self.gaussian = torch.nn.Sequential(torch.nn.Linear(WIDTH + 1 + NUM_PARTS, HIDDEN), torch.nn.LeakyReLU(0.1),
                                            torch.nn.Linear(HIDDEN, 2 * CODE_DIM))
        # Start with narrow Gaussians: a first run that started at the prior (variance 1, means near 0)
        # drew codes that were all noise, the refiner learnt to ignore them and the KL stayed at 0.04
        # (the codes carried nothing) through 1000 steps. The KL term widens them as training goes.
        with torch.no_grad():
            self.gaussian[-1].weight[CODE_DIM:].zero_()
            self.gaussian[-1].bias[CODE_DIM:].fill_(LOG_VARIANCE_AT_START)

    def forward(self, source_image, parts_onehot):
        image = F.avg_pool2d(source_image, DOWNSCALE)
        parts = F.avg_pool2d(parts_onehot, DOWNSCALE)  # share of each part in a cell
        features = self.features(torch.cat([image, parts], 1))  # [B,C,n,n]
        weight = torch.sigmoid(self.attention(features))  # [B,1,n,n]
        cells = features.shape[2] * features.shape[3]
        # Weights pre-divided by the cell count: sums over 64 x 64 cells stay small in FP16.
        masks = (parts * weight).flatten(2) / cells  # [B,P,nn]
        mass = masks.sum(-1, keepdim=True)  # [B,P,1]
        pooled = (masks @ features.flatten(2).transpose(1, 2)) / mass.clamp_min(0.25 / cells)  # [B,P,C]
        shown = (mass > 0).to(pooled.dtype)
        identity = torch.eye(NUM_PARTS, dtype=pooled.dtype, device=pooled.device).expand(pooled.shape[0], -1, -1)
        mean, log_variance = self.gaussian(torch.cat([pooled, shown, identity], -1)).split(CODE_DIM, -1)
        return mean, log_variance


def sample_codes(mean, log_variance, generator: torch.Generator):
    """Codes drawn from the encoder's Gaussians (training; serving takes ``mean``), the noise from
    ``generator`` (a CPU one, so a seeded run draws the same codes on any device)."""
    noise = torch.randn(mean.shape, generator=generator).to(mean)
    return mean + noise * torch.exp(0.5 * log_variance)


def kl_to_prior(mean, log_variance):
    """KL(N(mean, var) || N(0, I)), summed over a code's dimensions, averaged over parts and batch."""
    return 0.5 * (mean * mean + torch.exp(log_variance) - 1.0 - log_variance).sum(-1).mean()


def with_codes(region_style, codes):
    """``region_style`` ``[B,P,16]`` with ``codes`` ``[B,P,CODE_DIM]`` in :data:`CODE_DIMS`."""
    return torch.cat([region_style[..., :FIRST_CODE_DIM], codes.to(region_style.dtype)], -1)


def parts_onehot(parsing, dtype=torch.float32):
    """``[B,P,N,N]`` {0,1} from part labels ``[B,1,N,N]`` (any integer dtype)."""
    ids = torch.arange(NUM_PARTS, device=parsing.device).reshape(1, -1, 1, 1)
    return (parsing.to(torch.int64) == ids).to(dtype)
