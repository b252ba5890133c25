"""Pairs photo(A) -> truth(B) through the project's own subject side, with the *fitted* body.

For each :class:`~bodydance.training.scenes.Scene`: its photo goes through the MediaPipe
reconstruction and the subject-side stages (exactly what ``bodydance_subject`` runs, in process), so
the body, camera, mask and plate carry the fitting error a real photo gets; each target pose then
goes through the deterministic frame path. A pair keeps what the style generator receives, the
deterministic frame, and the truth drawn by the scene. A learned generator trained on these learns to
absorb the fit's errors, not only to fill surface.

One shard per scene (``seed_<seed>.npz``), arrays with ``K`` target poses in front:

* subject side: ``source_image [3,N,N]`` uint8, ``source_parsing [1,N,N]`` uint8 (part labels),
  ``background [3,N,N]`` uint8, ``region_style [P,16]`` f32 (the deterministic codes)
* per pose: ``flow [K,2,N,N]`` f16 NDC, ``visibility [K,1,N,N]`` uint8 {0,1}, ``target_parsing [K,1,N,N]``
  uint8, ``frame [K,N,N,3]`` uint8 (deterministic), ``truth [K,N,N,3]`` uint8, ``truth_person [K,N,N]``
  bool, ``covisible [K,N,N]`` bool (surface the photo shows)
* the same per-pose arrays for each target pose's next frame of its dance, prefixed ``next_``
  (``Scene.target_pose_pairs``: the target poses are those ``Scene.target_poses`` draws), and the
  renderer's exact surface flow between the two, both directions: ``flow_to_next [K,N,N,2]`` f16
  (col, row) px where each person pixel of the pose lies in its next frame, ``shown_to_next [K,N,N]``
  bool (the point is shown in both), ``flow_from_next``, ``shown_from_next`` back (``Scene.surface_flow``)
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np
import torch

from bodydance.stages.parsing import ParsingPrior, SourceParser
from bodydance.stages.plate_inpainter import load_inpainter
from bodydance.stages.reconstruction.frame import BodyGeometry
from bodydance.stages.style import StyleEncoder, StyleGenerator
from bodydance.training.scenes import Scene, covisible
from bodydance_client import contract as C
from bodydance_client.errors import BodyDanceError

GENERATOR_INPUTS = tuple(s.name for s in C.STYLE_GENERATOR.inputs)
NEXT = "next_"  # the per-pose arrays of each target pose's next dance frame carry this prefix
# (flow, shown) keys: the renderer's exact surface flow from each pose to its next frame, and back.
TEMPORAL_FLOWS = (("flow_to_next", "shown_to_next"), ("flow_from_next", "shown_from_next"))
DEFAULT_FOLDER = Path.home() / ".cache" / "bodydance" / "training"  # train/ and held_out/ shards


class DeterministicPath(torch.nn.Module):
    """The subject-side ONNX stages (the plate inpainter as the export builds it) and the deterministic
    frame path, in process, at one resolution."""

    def __init__(self, resolution: int):
        super().__init__()
        self.parser = SourceParser(resolution)
        self.encoder = StyleEncoder(resolution, load_inpainter())
        self.geometry = BodyGeometry(resolution)
        self.prior = ParsingPrior(resolution)
        self.generator = StyleGenerator()

    @torch.no_grad()
    def subject(self, reconstruction) -> Dict[str, torch.Tensor]:
        t = {k: torch.from_numpy(np.asarray(getattr(reconstruction, k)))[None]
             for k in ("source_image", "person_mask", "plate_fill", "betas", "source_pose", "camera")}
        t["source_parsing"], t["source_depth"] = self.parser(t["person_mask"], t["betas"], t["source_pose"], t["camera"])
        t["region_style"], t["background"] = self.encoder(t["source_image"], t["person_mask"], t["source_parsing"],
                                                          t.pop("plate_fill"))
        return t

    @torch.no_grad()
    def frames(self, subject: Dict[str, torch.Tensor], poses: np.ndarray, translations: np.ndarray):
        """-> generator inputs (``[K,...]``) and the deterministic frames ``[K,N,N,3]`` uint8."""
        k = len(poses)
        rep = {name: value.expand(k, *value.shape[1:]) for name, value in subject.items()}
        flow, visibility, parts = self.geometry(rep["betas"], rep["source_pose"], rep["camera"], rep["source_depth"],
                                                rep["source_parsing"], torch.from_numpy(poses), torch.from_numpy(translations))
        parsing = self.prior(rep["source_parsing"], parts, flow)
        inputs = {"source_image": rep["source_image"], "background": rep["background"],
                  "region_style": rep["region_style"], "correspondence_flow": flow, "source_visibility": visibility,
                  "target_parsing": parsing}
        frame, _ = self.generator(*(inputs[name] for name in GENERATOR_INPUTS))
        return inputs, frame


def fitted_subject(scene: Scene, reconstruct, path: DeterministicPath):
    """(the scene's photo as drawn, its subject-side tensors as ``path.subject`` makes them), or None
    when the reconstruction refuses the photo (no person found, too small...)."""
    photo = scene.photo()
    try:
        reconstruction = reconstruct(photo.image)
    except BodyDanceError:
        return None
    return photo, path.subject(reconstruction)


def scene_pairs(scene: Scene, reconstruct, path: DeterministicPath, count: int) -> Optional[Dict[str, np.ndarray]]:
    """One shard's arrays for ``scene`` (see the module docstring), or None when the photo is refused:
    such scenes are skipped, as a user would see the refusal."""
    fitted = fitted_subject(scene, reconstruct, path)
    if fitted is None:
        return None
    photo, subject = fitted
    poses, translations, next_poses, next_translations = scene.target_pose_pairs(count)
    arrays = {"seed": np.int64(scene.seed), "source_image": subject["source_image"][0].numpy(),
              "source_parsing": subject["source_parsing"][0].numpy(),
              "background": subject["background"][0].numpy(), "region_style": subject["region_style"][0].numpy()}
    now = _pose_arrays(scene, photo, subject, path, poses, translations)
    after = _pose_arrays(scene, photo, subject, path, next_poses, next_translations)
    arrays.update({k: v for k, v in now.items() if k != "renders"})
    arrays.update({NEXT + k: v for k, v in after.items() if k != "renders"})
    flows = [[scene.surface_flow(a, pose, shift, b) for a, b, pose, shift in zip(*drawn)]
             for drawn in ((now["renders"], after["renders"], next_poses, next_translations),
                           (after["renders"], now["renders"], poses, translations))]
    for (flow_key, shown_key), pairs in zip(TEMPORAL_FLOWS, flows):
        arrays[flow_key] = np.stack([f for f, _ in pairs]).astype(np.float16)
        arrays[shown_key] = np.stack([shown for _, shown in pairs])
    return arrays


def _pose_arrays(scene, photo, subject, path, poses, translations) -> Dict[str, np.ndarray]:
    """The per-pose arrays of the module docstring, and the truth's ``renders``."""
    inputs, frame = path.frames(subject, poses, translations)
    truths = scene.render(list(poses), list(translations))
    return {
        "flow": inputs["correspondence_flow"].numpy().astype(np.float16),
        "visibility": inputs["source_visibility"].numpy().astype(np.uint8),
        "target_parsing": inputs["target_parsing"].numpy().astype(np.uint8),
        "frame": frame.numpy(),
        "truth": np.stack([t.image for t in truths]),
        "truth_person": np.stack([t.person for t in truths]),
        "covisible": np.stack([covisible(photo, t) for t in truths]),
        "renders": truths,
    }


def write_shards(seeds: Iterable[int], folder: Path, poses_per_scene: int, resolution: int = C.DEFAULT_RESOLUTION,
                 progress=None) -> int:
    """Make the shards of ``seeds`` not yet in ``folder`` (so an interrupted run resumes); -> shards written."""
    from bodydance.stages.reconstruction.subject import Reconstructor

    folder.mkdir(parents=True, exist_ok=True)
    path = DeterministicPath(resolution)
    written = 0
    with Reconstructor(resolution=resolution, frame_person=False) as reconstruct:
        for seed in seeds:
            target = folder / f"seed_{seed}.npz"
            if not _current(target):
                arrays = scene_pairs(Scene(seed, resolution), reconstruct, path, poses_per_scene)
                # Refused photos leave an empty marker, so a resumed run does not try them again.
                partial = target.with_suffix(".partial.npz")
                np.savez_compressed(partial, **(arrays or {"refused": np.int64(seed)}))
                partial.rename(target)  # whole shards only: an interrupted write leaves no shard behind
                written += 1
            if progress is not None:
                progress()
    return written


def has_next_frames(keys) -> bool:
    """A shard's arrays (or their names) hold the next frames (shards made before them do not)."""
    return TEMPORAL_FLOWS[0][0] in keys


def has_source_parsing(keys) -> bool:
    """A shard's arrays (or their names) hold the photo's part labels, which the learned style codes read
    (shards made before them do not)."""
    return "source_parsing" in keys


def _current(shard: Path) -> bool:
    """The shard exists and holds the next frames and the photo's parsing (older shards are made again)."""
    if not shard.exists():
        return False
    with np.load(shard) as data:
        return "refused" in data.files or (has_next_frames(data.files) and has_source_parsing(data.files))


def load_shards(folder: Path) -> list:
    """The usable shards in ``folder`` (refused scenes left out), as dicts of arrays."""
    shards = []
    for path in sorted(Path(folder).glob("seed_*.npz")):
        if path.name.endswith(".partial.npz"):
            continue
        with np.load(path) as data:
            if "refused" not in data.files:
                shards.append({k: data[k] for k in data.files})
    return shards
