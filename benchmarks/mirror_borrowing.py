"""Does borrowing the mirror image help where the photo hides a point? An ablation, in-process.

Textured synthetic subjects (as in ``synthetic_transfer.py``) photographed turned
50-75 degrees, so one side hides, then posed facing the camera. The frame path
runs with the true body twice on the same inputs: as shipped, and with the
mirror map replaced by the identity (hidden points fall back to their part's
mean colour). PSNR / SSIM on the target person against the exact render.

    python benchmarks/mirror_borrowing.py [--subjects 8]
Writes benchmarks/results/mirror_borrowing.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import synthetic_transfer as synthetic
from bodydance.body import BodyModel, load_open_body_arrays
from bodydance.stages.parsing import SourceParser
from bodydance.stages.reconstruction import plate
from bodydance.stages.registry import FramePath
from bodydance.stages.style import StyleEncoder

RESULTS = Path(__file__).parent / "results"
N = synthetic.N


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    body, arrays = BodyModel.open_body(), load_open_body_arrays()
    source_parser, style_encoder, frame_path = SourceParser(N).eval(), StyleEncoder(N).eval(), FramePath(N).eval()
    shipped = frame_path.geometry.surface.donor_maps.clone()  # [1,V]: the mirror map
    variants = {"mirror borrowing (shipped)": shipped, "no borrowing (identity map)": torch.arange(shipped.shape[1])[None]}
    scores = {name: [] for name in variants}
    for _ in range(args.subjects):
        scene = synthetic.Scene(body, arrays, rng)
        pose_a, pose_b = synthetic.source_pose(rng), synthetic.source_pose(rng)
        pose_a[0, 1] = rng.choice([-1.0, 1.0]) * rng.uniform(0.9, 1.3)  # turned about the vertical axis
        photo, render_a, _ = scene.render(pose_a)
        truth, render_b, _ = scene.render(pose_b)
        image = torch.from_numpy((photo.astype(np.float32) / 255).transpose(2, 0, 1)[None].copy())
        mask = torch.from_numpy(render_a.silhouette.astype(np.float32)[None, None])
        betas, camera = torch.from_numpy(scene.betas[None]), torch.from_numpy(scene.camera[None])
        source_pose = torch.from_numpy(pose_a[None])
        with torch.no_grad():
            parsing, depth = source_parser(mask, betas, source_pose, camera)
            style = style_encoder.region_style(image, mask, parsing)
            hole = plate.person_hole(render_a.silhouette.astype(np.float32), render_a.silhouette)
            background = torch.from_numpy((plate.inpaint(photo, hole).astype(np.float32) / 255).transpose(2, 0, 1)[None].copy())
            for name, mirror in variants.items():
                frame_path.geometry.surface.donor_maps = mirror
                out = frame_path(image, betas, source_pose, camera, parsing, depth, style, background,
                                 torch.from_numpy(pose_b[None]), torch.zeros(1, 3))[0][0].numpy()  # (frame, alpha)[0], batch item 0
                scores[name].append(synthetic.region_scores(out, truth, render_b.silhouette))
    lines = [f"# Mirror borrowing, {args.subjects} subjects photographed turned 50-75 degrees, {N}x{N}, true body",
             "", "| frame path | PSNR person (dB) | SSIM person |", "|---|---|---|"]
    for name, values in scores.items():
        psnr, ssim = np.nanmean(np.asarray(values), axis=0)
        lines.append(f"| {name} | {psnr:.2f} | {ssim:.3f} |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mirror_borrowing.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
