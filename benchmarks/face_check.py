"""Face check: every real portrait the project has dances 'disco'; MediaPipe Face Mesh on every frame.

Found rate and face-shape error: the frame's 468 landmarks similarity-aligned onto the photo's,
RMS / the photo's inter-ocular distance, with two floors: the photo merely downscaled to the
output size, and that copy turned in the image plane by each frame's own roll (the dance holds a
head upright that the photo shows tilted; on a profile, Face Mesh places its landmarks differently
on the same face turned by 20 degrees). Run by ``real_footage.py`` (which owns the server and the animate helper).

Because that floor can lie above the goal, each frame is also compared with its own turned copy
(the face the frame would show had it moved as one rigid piece): the copy's landmarks are the
reference, so Face Mesh's way of placing them on a turned face cancels. Frames where no face is
found take the roll interpolated from the nearest found frames (the dance turns the head smoothly),
and the copies' found rate is the found-rate floor at the output's roll.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import footage_metrics as M
from bodydance_client.errors import BodyDanceError

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
GOAL = {"found_rate": 0.95, "median": 0.04, "p90": 0.06}


def portraits() -> dict:
    import matplotlib.cbook
    import skimage.data

    rgb = lambda path: np.asarray(Image.open(path).convert("RGB"))  # noqa: E731
    return {"astronaut": rgb(ROOT / "client" / "bodydance_client" / "data" / "astronaut.jpg"),
            "grace_hopper": rgb(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
            "cameraman": np.repeat(skimage.data.camera()[..., None], 3, axis=2),
            "sports2d": rgb(DATA / "sports2d.jpg")}


def face_landmarks(mesh, image: np.ndarray):
    result = mesh.process(np.ascontiguousarray(image))
    if not result.multi_face_landmarks:
        return None
    h, w = image.shape[:2]
    return np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark[:468]], np.float64)


def roll_deg(points: np.ndarray, reference: np.ndarray) -> float:
    """Counter-clockwise degrees (as the viewer sees it) of the similarity taking ``reference`` onto ``points``."""
    as_complex = lambda p: (p[:, 0] - p[:, 0].mean()) - 1j * (p[:, 1] - p[:, 1].mean())  # noqa: E731
    return float(np.degrees(np.angle(np.vdot(as_complex(reference), as_complex(points)))))


def turned_copies(mesh, small: np.ndarray, reference: np.ndarray, scale: float, rolls) -> list:
    """Face Mesh's landmarks (output px) on ``small`` (the photo downscaled by ``scale``) turned by
    each of ``rolls`` (degrees, to the nearest one) about its face; None where it finds no face."""
    centre = tuple(float(v) for v in reference.mean(0) * scale)
    cache = {}
    for roll in rolls:
        key = int(round(roll))
        if key not in cache:
            turn = cv2.getRotationMatrix2D(centre, key, 1.0)
            turned = cv2.warpAffine(small, turn, small.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
            cache[key] = face_landmarks(mesh, turned)
    return [cache[int(round(roll))] for roll in rolls]


def every_frame_roll(rolls_where_found: list) -> list:
    """Per frame, its measured roll (degrees), or where none was found the roll interpolated
    between the nearest found frames; ``rolls_where_found`` holds None for those."""
    found = [i for i, r in enumerate(rolls_where_found) if r is not None]
    if not found:
        return []
    return list(np.interp(np.arange(len(rolls_where_found)), found, [rolls_where_found[i] for i in found]))


def against_turned_copies(found: list, copies: list) -> list:
    """Per frame, the frame's shape error with its own turned copy as the reference (None where
    either has no face)."""
    return [M.face_shape_error(f, c) if f is not None and c is not None else None for f, c in zip(found, copies)]


def meets(found_rate: float, error: dict) -> bool:
    return bool(found_rate >= GOAL["found_rate"] and error["n"]
                and error["median"] <= GOAL["median"] and error["p90"] <= GOAL["p90"])


def face_check(client, workdir: Path, animate, limit: int = 0) -> dict:
    """``animate(client, photo, template, workdir, name) -> (subject, frames, warnings)``."""
    import mediapipe as mp

    results = {}
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        for name, photo in portraits().items():
            entry = results[name] = {"photo_size": [photo.shape[1], photo.shape[0]]}
            try:
                _, out, caught = animate(client, photo, "disco", workdir, f"face_{name}")
            except BodyDanceError as err:
                entry["error"] = f"{type(err).__name__}: {err}"
                continue
            out = out[:limit] if limit else out
            oh, ow = out[0].shape[:2]
            scale = max(oh, ow) / max(photo.shape[:2])
            small = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)), interpolation=cv2.INTER_AREA)[:oh, :ow]
            reference, floor_lm = face_landmarks(mesh, photo), face_landmarks(mesh, small)
            found = [face_landmarks(mesh, f) for f in out]
            entry.update({"output_size": [ow, oh], "frames": len(out), "warnings": caught,
                          "face_in_photo": reference is not None, "face_in_downscaled_photo": floor_lm is not None,
                          "found_rate": sum(f is not None for f in found) / len(found)})
            if reference is not None:
                iod = float(np.linalg.norm(reference[M.LEFT_EYE_OUTER] - reference[M.RIGHT_EYE_OUTER]))
                errors = [M.face_shape_error(f, reference) if f is not None else None for f in found]
                rolls = every_frame_roll([roll_deg(f, reference) if f is not None else None for f in found])
                copies = turned_copies(mesh, small, reference, scale, rolls) if rolls else [None] * len(found)
                at_roll = against_turned_copies(found, copies)
                entry.update({"interocular_px_photo": iod, "interocular_px_output": iod * scale,
                              "error_per_frame": errors, "shape_error": M.summary(errors),
                              "roll_deg": M.summary(r for r, f in zip(rolls, found) if f is not None),
                              "roll_per_frame_deg": rolls,
                              "floor_at_roll": M.summary(M.face_shape_error(c, reference) if c is not None else None
                                                         for c, f in zip(copies, found) if f is not None),
                              "found_rate_of_turned_copies": sum(c is not None for c in copies) / len(found),
                              "error_against_turned_copy_per_frame": at_roll,
                              "error_against_turned_copy": M.summary(at_roll),
                              "floor": M.face_shape_error(floor_lm, reference) if floor_lm is not None else None})
                entry["meets_goal"] = meets(entry["found_rate"], entry["shape_error"])
                entry["meets_goal_against_turned_copy"] = meets(entry["found_rate"], entry["error_against_turned_copy"])
    return results


def face_markdown(r: dict, meta: dict) -> str:
    lines = [f"# Face check: bundled 'disco' on every real portrait ({meta['label']})", "",
             f"Code: `{meta['commit']}`; {meta['date']}. MediaPipe Face Mesh (static, 1 face) on every output frame and "
             "on the photo; error = RMS of the 468 landmarks after a similarity fit onto the photo's, in photo "
             f"inter-ocular distances (landmarks 33-263). Goal: found >= {GOAL['found_rate']:.0%}, "
             f"median <= {GOAL['median']}, p90 <= {GOAL['p90']}. Floor: the photo downscaled to the output size; "
             "at the output's roll: that copy turned by each found frame's roll (median / p90 over the frames). "
             "Against its turned copy: each frame's landmarks aligned onto those of the copy turned by its own roll "
             "(interpolated where no face was found), so that Face Mesh's placement on a turned face cancels; "
             "copies found: the found-rate floor at the output's roll.", "",
             "| photo | photo px | output px | eyes apart in output px | face found in frames | median | p90 | floor "
             "| roll vs the photo, median (deg) | floor at the output's roll | goal met "
             "| turned copies found | median / p90 against its turned copy | goal met against it |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in r.items():
        size = "x".join(map(str, e["photo_size"]))
        if "output_size" not in e:
            lines.append(f"| {name} | {size} | failed: {e['error']} | | | | | | | | no | | | |")
            continue
        out = "x".join(map(str, e["output_size"]))
        if not e["face_in_photo"]:
            lines.append(f"| {name} | {size} | {out} | - | {e['found_rate']:.0%} | no face found in the photo itself "
                         f"| - | - | - | - | n/a | - | - | n/a |")
            continue
        s, t = e["shape_error"], e["error_against_turned_copy"]
        lines.append(f"| {name} | {size} | {out} | {e['interocular_px_output']:.1f} | {e['found_rate']:.0%} "
                     f"| {M.fmt(s['median'], 3)} | {M.fmt(s['p90'], 3)} "
                     f"| {M.fmt(e['floor'], 3) if e['floor'] is not None else 'no face when downscaled'} "
                     f"| {M.fmt(e['roll_deg']['median'], 0)} "
                     f"| {M.fmt(e['floor_at_roll']['median'], 3)} / {M.fmt(e['floor_at_roll']['p90'], 3)} "
                     f"| {'yes' if e['meets_goal'] else 'no'} "
                     f"| {e['found_rate_of_turned_copies']:.0%} "
                     f"| {M.fmt(t['median'], 3)} / {M.fmt(t['p90'], 3)} "
                     f"| {'yes' if e['meets_goal_against_turned_copy'] else 'no'} |")
    return "\n".join(lines) + "\n"
