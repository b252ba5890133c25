"""How many pixels tall the person is: in the working square the models see, and in the video.

For the bundled astronaut, the committed Sports2D photo (a crop) and a whole Sports2D demo
frame (1768 x 994, a man on a wall in a wide scene), in-process (the subject side's own
reconstructor, no server): the person mask's height in the N x N square when the square is
the whole photo's letterbox (before) and when it is chosen around the person (now), and the
video's size (before: the letterbox cropped back to the photo's aspect; now: the photo's own
resolution, long side up to 1920).

    python benchmarks/person_pixels.py      # writes benchmarks/results/person_pixels.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bodydance.stages.reconstruction.subject import Reconstructor
from bodydance_client import contract as C
from bodydance_client.compositing import DEFAULT_MAX_SIDE
from bodydance_client.images import UPLOAD_SIDE, load_photo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).parent))


def _tall(mask: np.ndarray) -> int:
    rows = np.nonzero((mask > 0.5).any(1))[0]
    return int(rows.max() - rows.min() + 1) if rows.size else 0


def photos():
    yield "astronaut (512 x 512)", load_photo(ROOT / "client" / "bodydance_client" / "data" / "astronaut.jpg")
    yield "Sports2D photo (480 x 580 crop)", load_photo(ROOT / "benchmarks" / "data" / "sports2d.jpg")
    from real_footage import decode, demo_video  # the cached Sports2D demo video

    frame = decode(demo_video())[46]
    yield "Sports2D demo frame 46 (1768 x 994)", frame


def main() -> None:
    n = C.DEFAULT_RESOLUTION
    rows = []
    with Reconstructor(n, frame_person=False) as letterboxed, Reconstructor(n) as framed:
        for name, photo in photos():
            upload = load_photo(photo)
            h, w = photo.shape[:2]
            before, now = letterboxed(upload), framed(upload)
            square = C.PhotoSquare.from_tensor(now.photo_square, n)
            scale_before = n / max(upload.shape[:2])
            video_before = (round(w * scale_before * upload.shape[1] / w), round(h * scale_before * upload.shape[1] / w))
            f = min(1.0, DEFAULT_MAX_SIDE / max(h, w))
            video_now = (round(w * f), round(h * f))
            tall_before, tall_now = _tall(before.person_mask[0]), _tall(now.person_mask[0])
            # in the video: the square's pixels scaled to the video (before: the video is the letterbox's crop)
            in_video_before = tall_before
            in_video_now = tall_now * (square.side * video_now[0] / upload.shape[1]) / n
            rows.append((name, tall_before, tall_now, tall_now / max(tall_before, 1), video_before, video_now,
                         in_video_before, in_video_now, square))
    lines = [f"# Person height in pixels (N = {n}; uploads are at most {UPLOAD_SIDE} px, videos at most {DEFAULT_MAX_SIDE})",
             "", "| photo | in the square, before (letterbox) | now (around the person) | ratio | video before | video now "
             "| person in the video before | now (generated at the square's resolution) | square (upload px) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, tb, tn, ratio, vb, vn, ib, inow, sq in rows:
        lines.append(f"| {name} | {tb} | {tn} | {ratio:.2f}x | {vb[0]}x{vb[1]} | {vn[0]}x{vn[1]} | {ib} | {inow:.0f} "
                     f"| left {sq.left}, top {sq.top}, side {sq.side} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "person_pixels.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
