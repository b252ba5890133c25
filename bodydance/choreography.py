"""Procedural dance templates (the bundled ones), written as smooth loops of joint angles.

Angles are radians about the SMPL axes, relative to the T-pose: for the left
arm (+X) a rotation about +Z lifts it (negative lowers it to the side), about
+Y swings it backwards (negative: forwards, towards the camera); the right arm
mirrors the signs. Knees flex about +X, hips flex forwards about -X.

    python -m bodydance.choreography --out client/bodydance_client/data/templates
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from bodydance_client.contract import JOINT_NAMES
from bodydance_client.templates import Template, save_template

FPS = 30.0
J = {name: i for i, name in enumerate(JOINT_NAMES)}
ARMS_DOWN = 1.25  # shoulder rotation that brings a T-pose arm to the side
LEG_LENGTH_M = 0.77  # hip to ankle of the open body's skeleton


def _frames(seconds: float):
    t = np.arange(int(round(seconds * FPS))) / FPS
    return t, np.zeros((t.size, 24, 3), np.float32), np.zeros((t.size, 3), np.float32)


def _squat(poses, translations, depth):
    """Bend both legs by ``depth`` rad at the hip (knees twice, ankles back) and lower the root."""
    for side in ("left", "right"):
        poses[:, J[f"{side}_hip"], 0] = -depth
        poses[:, J[f"{side}_knee"], 0] = 2 * depth
        poses[:, J[f"{side}_ankle"], 0] = -depth
    translations[:, 1] = -LEG_LENGTH_M * (1 - np.cos(depth))


def wave(seconds: float = 6.0) -> Template:
    """Arms wave overhead in a V, hips sway side to side."""
    t, poses, tr = _frames(seconds)
    phase = 2 * np.pi * t / 2.0  # one sway every 2 s
    lift = 0.55 + 0.35 * np.sin(phase)
    poses[:, J["left_shoulder"], 2] = lift
    poses[:, J["right_shoulder"], 2] = -(0.55 - 0.35 * np.sin(phase))
    poses[:, J["left_elbow"], 2] = 0.5 + 0.4 * np.sin(2 * phase)
    poses[:, J["right_elbow"], 2] = -(0.5 + 0.4 * np.sin(2 * phase + np.pi))
    poses[:, J["pelvis"], 2] = 0.08 * np.sin(phase)
    poses[:, J["spine2"], 2] = -0.12 * np.sin(phase)
    poses[:, J["head"], 2] = 0.1 * np.sin(phase)
    tr[:, 0] = 0.06 * np.sin(phase)
    _squat(poses, tr, 0.12 + 0.08 * np.sin(2 * phase) ** 2)
    return Template("wave", FPS, poses, tr)


def disco(seconds: float = 6.0) -> Template:
    """Right arm points up across the body then down; left hand on the hip; step-touch."""
    t, poses, tr = _frames(seconds)
    beat = 2 * np.pi * t / 1.5
    up = 0.5 + 0.5 * np.sin(beat)  # 0..1
    poses[:, J["right_shoulder"], 2] = (1 - up) * ARMS_DOWN - 1.2 * up  # from by the side to pointing up
    poses[:, J["right_elbow"], 1] = 0.3 * (1 - up)
    poses[:, J["left_shoulder"], 2] = -0.9
    poses[:, J["left_elbow"], 1] = -1.6  # forearm forwards and in: hand to the hip
    poses[:, J["left_elbow"], 2] = 0.6
    step = np.sin(beat / 2)
    tr[:, 0] = 0.12 * step
    poses[:, J["pelvis"], 2] = -0.06 * step
    poses[:, J["spine3"], 1] = 0.15 * np.sin(beat)
    _squat(poses, tr, 0.15 + 0.1 * up)
    poses[:, J["left_hip"], 2] = 0.12 * np.clip(step, 0, 1)
    poses[:, J["right_hip"], 2] = 0.12 * np.clip(step, -1, 0)
    return Template("disco", FPS, poses, tr)


def jumping_jacks(seconds: float = 5.0) -> Template:
    """Arms from the sides to overhead while the feet jump apart."""
    t, poses, tr = _frames(seconds)
    cycle = 0.5 - 0.5 * np.cos(2 * np.pi * t / 1.25)  # 0 closed .. 1 open
    arm = -ARMS_DOWN + (ARMS_DOWN + 1.2) * cycle
    poses[:, J["left_shoulder"], 2] = arm
    poses[:, J["right_shoulder"], 2] = -arm
    poses[:, J["left_hip"], 2] = 0.3 * cycle
    poses[:, J["right_hip"], 2] = -0.3 * cycle
    hop = np.abs(np.sin(2 * np.pi * t / 1.25))
    _squat(poses, tr, 0.1 * (1 - hop))
    tr[:, 1] += 0.05 * hop
    return Template("jumping_jacks", FPS, poses, tr)


def squat_spin(seconds: float = 6.0) -> Template:
    """Squats with the arms reaching forwards while the body turns slowly left and right."""
    t, poses, tr = _frames(seconds)
    phase = 2 * np.pi * t / 3.0
    depth = 0.35 * (0.5 - 0.5 * np.cos(2 * phase))
    poses[:, J["left_shoulder"], 1] = -1.2 * (0.3 + depth / 0.35 * 0.7)
    poses[:, J["right_shoulder"], 1] = 1.2 * (0.3 + depth / 0.35 * 0.7)
    poses[:, J["left_shoulder"], 2] = -0.35
    poses[:, J["right_shoulder"], 2] = 0.35
    poses[:, J["pelvis"], 1] = 0.6 * np.sin(phase)
    _squat(poses, tr, depth)
    return Template("squat_spin", FPS, poses, tr)


DANCES: Dict[str, Callable[[], Template]] = {f.__name__: f for f in (wave, disco, jumping_jacks, squat_spin)}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Write the procedural dance templates.")
    parser.add_argument("--out", type=Path, default=Path("client/bodydance_client/data/templates"),
                        help="folder for the .npz files")
    out = parser.parse_args(argv).out
    for name, make in DANCES.items():
        template = make()
        save_template(template, out / f"{name}.npz")
        print(f"{name}: {template.num_frames} frames, {template.duration_s:.1f} s")


if __name__ == "__main__":
    main()
