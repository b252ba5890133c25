"""Real photos that ship inside packages, end to end through the served pipeline: overlays and contact sheets.

For each photo (three from scikit-image and Matplotlib, two full-body frames
of the Sports2D package's demo video committed under benchmarks/data/: the man
cropped, and small in the whole frame): the
fitted open-body mesh drawn over the letterboxed photo (the reconstruction as
the frame path sees it), and a contact sheet of the photo dancing a bundled
template.

    python benchmarks/real_photos.py                               # the default, deterministic generator
    BODYDANCE_GENERATOR=learned python benchmarks/real_photos.py   # the trained refiner
    BODYDANCE_PLATE=learned python benchmarks/real_photos.py       # the learned plate inpainter
Writes benchmarks/results/real_<name>_overlay.png and real_<name>_sheet.png (real_<name>_sheet_learned.png
with the refiner, real_<name>_sheet_plate.png with the plate inpainter); once both sheets exist,
real_<name>_before_after.png (real_<name>_before_after_plate.png) stacks them, the defaults above.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bodydance.body import BodyModel, load_open_body_arrays
from bodydance.reference_render import part_image, rasterize
from bodydance.serving.repository import REPOSITORY_ROOT
from bodydance.stages.generator_switch import generator_choice, plate_choice
from bodydance.serving.server import EmbeddedTritonServer
from bodydance_client.sdk import BodyDanceClient
from bodydance_client.video import contact_sheet
from bodydance_export.freshness import ensure_exported

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).parent / "data"
PART_COLOURS = np.array([[0, 0, 0], [230, 80, 80], [80, 160, 230], [80, 220, 120], [240, 200, 60], [200, 90, 220],
                         [60, 220, 220], [250, 140, 40]], np.float64)


def photos():
    import matplotlib
    import skimage.data

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": np.asarray(Image.open(hopper).convert("RGB")),
            "cameraman": np.repeat(skimage.data.camera()[..., None], 3, axis=2),
            # Full body, head to feet: a frame of Sports2D's demo video (BSD-3-Clause, see data/sports2d.LICENSE.txt).
            "sports2d": np.asarray(Image.open(DATA / "sports2d.jpg").convert("RGB")),
            # The same video's frame 9 whole, at half size: the man a third of the photo's height.
            "sports2d_wide": np.asarray(Image.open(DATA / "sports2d_wide.jpg").convert("RGB"))}


def overlay(subject, body, arrays) -> np.ndarray:
    t = subject.tensors
    with torch.no_grad():
        verts, _ = body(torch.from_numpy(t["betas"]), torch.from_numpy(t["source_pose"]), torch.zeros(1, 3))
    n = subject.resolution
    render = rasterize(verts[0].numpy(), arrays["faces"], t["camera"][0], n)
    parts = part_image(render, arrays["faces"], arrays["part_labels"])
    image = t["source_image"][0].transpose(1, 2, 0).astype(np.float64)  # uint8 levels on the wire
    hit = parts > 0
    image[hit] = 0.45 * image[hit] + 0.55 * PART_COLOURS[parts[hit]]
    return image.round().astype(np.uint8)


def sheet_suffix() -> str:
    """"" for the defaults; "_learned" with the trained refiner, "_plate" with the learned plate inpainter."""
    return ("_learned" if generator_choice() == "learned" else "") + ("_plate" if plate_choice() == "learned" else "")


def stack_before_after(name: str, suffix: str) -> None:
    """real_<name>_before_after.png (the refiner) or real_<name>_before_after<suffix>.png: the default
    sheet above the one made with ``suffix``'s learned parts, when both exist."""
    if not suffix:
        return
    sheets = [RESULTS / f"real_{name}_sheet{s}.png" for s in ("", suffix)]
    if all(p.exists() for p in sheets):
        images = [np.asarray(Image.open(p).convert("RGB")) for p in sheets]
        if images[0].shape == images[1].shape:
            target = RESULTS / f"real_{name}_before_after{'' if suffix == '_learned' else suffix}.png"
            Image.fromarray(np.concatenate(images, 0)).save(target)


def main():
    RESULTS.mkdir(exist_ok=True)
    body, arrays = BodyModel.open_body(), load_open_body_arrays()
    suffix = sheet_suffix()
    ensure_exported(REPOSITORY_ROOT / "cpu")
    with EmbeddedTritonServer(REPOSITORY_ROOT / "cpu") as server, BodyDanceClient(server.grpc_url) as client:
        client.wait_until_ready()
        for name, photo in photos().items():
            subject = client.prepare(photo)
            Image.fromarray(np.concatenate([subject.tensors["source_image"][0].transpose(1, 2, 0), overlay(subject, body, arrays)], 1)
                            ).save(RESULTS / f"real_{name}_overlay.png")
            frames = list(client.frames(subject, "disco"))
            contact_sheet(frames[::16][:11], RESULTS / f"real_{name}_sheet{suffix}.png", photo=subject.photo)
            stack_before_after(name, suffix)
            print(f"{name}: {photo.shape[1]}x{photo.shape[0]}, person_count {subject.person_count}, "
                  f"camera {np.round(subject.tensors['camera'][0], 3)}, betas[0] {subject.tensors['betas'][0, 0]:.2f}")


if __name__ == "__main__":
    main()
