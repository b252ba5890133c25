"""Which way a person faces: how often the face detectors find a face on the head, as the crop is and
with its levels stretched (``facing.levels_stretched``), on heads whose facing is known.

* Renders (synthetic_transfer scenes: random body, clothes, painted face, hair), arms lowered, turned
  to the camera (yaw 0, +-25 deg) and away from it (yaw 155, 180, 205 deg): a face found on a back
  is a false alarm, and it dances the photo's back as a front.
* The Sports2D dancer, frames 0-101: by eye, he faces the camera in all of them (turning towards his
  left from about frame 95), backlit by the sky; followed as the template builder follows him.

    python benchmarks/facing_evidence.py [--scenes 40]
Writes benchmarks/results/facing_evidence.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import av
import numpy as np

from bodydance.stages.reconstruction.facing import head_box, levels_stretched
from bodydance.stages.reconstruction.subject import Reconstructor
from bodydance.template_builder import PersonFollower
from bodydance_client.errors import NoPersonError
from real_footage import demo_video
from synthetic_transfer import Scene

RESULTS = Path(__file__).parent / "results"
FRONT_YAWS, BACK_YAWS = (0, 25, -25), (155, 180, 205)
FACING_FRAMES = range(0, 102)


def face_found(reconstruct: Reconstructor, photo: np.ndarray, region=None):
    """(found as the crop is, found with the crop's levels stretched), or None without a head to look at."""
    image_lm, _, _, _ = reconstruct._detect(photo, region)
    h, w = photo.shape[:2]
    box = head_box(image_lm[:, :2] * [w, h], image_lm[:, 2], w, h)
    if box is None:
        return None
    crop, _ = reconstruct._head_crop(photo, box)
    return reconstruct._detects_face(crop), reconstruct._detects_face(levels_stretched(crop))


def renders(reconstruct: Reconstructor, scenes: int) -> dict:
    from bodydance.body import BodyModel, load_open_body_arrays

    body, arrays = BodyModel.open_body(), load_open_body_arrays()
    looks = {yaw: [] for yaw in FRONT_YAWS + BACK_YAWS}
    for seed in range(scenes):
        scene = Scene(body, arrays, np.random.default_rng(1000 + seed))
        for yaw in looks:
            pose = np.zeros((24, 3), np.float32)
            pose[0, 1] = np.radians(yaw)
            pose[16, 2], pose[17, 2] = -1.1, 1.1  # arms lowered from the T
            try:
                found = face_found(reconstruct, scene.render(pose)[0])
            except NoPersonError:
                continue
            if found is not None:
                looks[yaw].append(found)
    return looks


def sports2d(reconstruct: Reconstructor) -> list:
    with av.open(str(demo_video())) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(FACING_FRAMES, container.decode(container.streams.video[0]))]
    follow, looks = PersonFollower(), []
    for image in frames:
        region = follow.region(image.shape[:2])
        try:
            fit = reconstruct(image, region=region)
        except NoPersonError:
            fit = None
        if not follow.take(fit):
            continue
        found = face_found(reconstruct, image, region)
        if found is not None:
            looks.append(found)
    return looks


def rates(looks: list) -> dict:
    found = np.asarray(looks, bool).reshape(-1, 2)
    return {"heads": len(found), "as_is": float(found[:, 0].mean()) if len(found) else None,
            "as_is_or_stretched": float(found.any(1).mean()) if len(found) else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=40)
    args = parser.parse_args()
    start = time.perf_counter()
    with Reconstructor(frame_person=False) as reconstruct:
        rendered = renders(reconstruct, args.scenes)
        video = sports2d(reconstruct)
    rows = {"renders facing the camera": rates(sum((rendered[y] for y in FRONT_YAWS), [])),
            "renders facing away (false alarms)": rates(sum((rendered[y] for y in BACK_YAWS), [])),
            "Sports2D dancer, frames 0-101 (facing the camera)": rates(video)}
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "facing_evidence.json").write_text(json.dumps(
        {"commit": commit, "scenes": args.scenes, "rows": rows,
         "per_yaw": {str(y): rates(v) for y, v in rendered.items()}}, indent=1))
    lines = ["# Facing evidence: a face found on the head, as the crop is and with its levels stretched", "",
             f"Code: `{commit}`; {args.scenes} rendered scenes per yaw; run {time.perf_counter() - start:.0f} s.", "",
             "| heads | looked at | face found as is | as is or stretched |", "|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['heads']} | {r['as_is']:.1%} | {r['as_is_or_stretched']:.1%} |")
    (RESULTS / "facing_evidence.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
