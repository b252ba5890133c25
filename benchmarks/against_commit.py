"""Serving speed of this tree against an older commit, measured in one run on this machine.

The older commit is checked out as a git worktree beside this one and given a virtual
environment that reuses this one's installed packages but imports its own code (a ``.pth``
file; its model repository is exported there). ``benchmarks/serving_speed.py`` then runs in
each tree in turn, ``--rounds 1`` at a time, alternating, so machine noise hits both; each
tree's own script is used, so each measures what it measured then.

    python benchmarks/against_commit.py 72c27d9 [--rounds 3] [--frames 48]
Writes benchmarks/results/against_<commit>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
CODE = (".", "client", "export")  # the folders the project's packages are found in


def worktree(commit: str) -> Path:
    """A worktree of ``commit`` with a venv that imports its code over this environment's packages."""
    tree = ROOT.parent / f".against_{commit}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True)
    python = tree / ".venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tree / ".venv")], check=True)
        site = next((tree / ".venv" / "lib").glob("python*/site-packages"))
        # Its code first; this environment's packages after (their .pth files, our editable install's among
        # them, are not processed there, so our code does not leak in).
        (site / "aaa_tree.pth").write_text("".join(f"{tree / c}\n" for c in CODE))
        (site / "packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return tree


def one_round(tree: Path, python: Path, frames: int) -> dict:
    subprocess.run([str(python), "benchmarks/serving_speed.py", "--rounds", "1", "--frames", str(frames)],
                   cwd=tree, check=True, capture_output=True)
    return json.loads((tree / "benchmarks" / "results" / "serving_speed_256.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=48)
    args = parser.parse_args()
    old = worktree(args.commit)
    trees = {"this tree": (ROOT, Path(sys.executable)), args.commit: (old, old / ".venv" / "bin" / "python")}
    committed = [ROOT / "benchmarks" / "results" / f"serving_speed_256.{ext}" for ext in ("json", "md")]
    keep = {path: path.read_bytes() for path in committed if path.exists()}
    runs = {name: [] for name in trees}
    try:
        for _ in range(args.rounds):
            for name, (tree, python) in trees.items():
                runs[name].append(one_round(tree, python, args.frames))
    finally:  # this tree's committed serving-speed results are not overwritten by these single rounds
        for path, content in keep.items():
            path.write_bytes(content)

    def median(name, key, group="stats"):
        return statistics.median(r[group][key]["median"] if group == "stats" else r[group][key] for r in runs[name])

    keys = list(runs["this tree"][0]["stats"])
    ratio_keys = list(runs["this tree"][0]["ratios"])
    table = {name: {"stats": {k: median(name, k) for k in keys}, "ratios": {k: median(name, k, "ratios") for k in ratio_keys}}
             for name in trees}
    RESULTS.mkdir(exist_ok=True)
    stem = f"against_{args.commit}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"rounds": args.rounds, "frames": args.frames, "runs": runs,
                                                      "medians": table}, indent=2))
    new, base = table["this tree"], table[args.commit]
    lines = [f"# This tree against {args.commit}, serving speed at 256 px, {args.rounds} alternating rounds (medians)",
             "", f"| measure | this tree | {args.commit} | this / {args.commit} |", "|---|---|---|---|"]
    lines += [f"| {k} | {new['stats'][k]:.2f} | {base['stats'][k]:.2f} | {new['stats'][k] / base['stats'][k]:.2f} |"
              for k in keys]
    lines += [f"| {k} | {new['ratios'][k]:.2f} | {base['ratios'][k]:.2f} | |" for k in ratio_keys]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
