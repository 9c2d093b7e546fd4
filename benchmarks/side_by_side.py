"""The harness beside TextGAN-PyTorch's SeqGAN, one benchmark at a time, interleaved.

Each round runs, for every part, the peer's timing of it and then ours, each in a fresh
process and nothing else at once, so drifting background load hits both alike. The
peer is timed by ``bench_textgan.py`` (shared with this project's tools: it runs the
peer's own code unedited, mapping ``torch.load`` to the CPU and skipping the peer's metric
computation inside the timed step), on a checkout of williamSYSU/TextGAN-PyTorch at
7ff8909; ours by ``bench_adversarial.py``. It prints each side's median, the ratio, and
our time over its arithmetic limit.

    python benchmarks/side_by_side.py --peer PATH/TextGAN-PyTorch --peer-script PATH/bench_textgan.py
                                      [--rounds 3] [--warmup 1] [--only mle,sample,disc,step]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# our part -> the peer's letter in bench_textgan.py and the work, as the table says it
PARTS = {"mle": ("a", "MLE epoch, 10,000 x 20"),
         "sample": ("d", "sample 10,000 + NLL-oracle"),
         "disc": ("c", "paper-D epoch, 10,000 + 10,000 rows"),
         "step": ("b", "adversarial generator step, 64 x 19 x 16")}


def run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def peer_seconds(args, letter: str) -> float:
    """The time of the peer's last repeat, after ``--warmup`` earlier ones (as ours)."""
    out = run([sys.executable, str(args.peer_script), str(args.peer), "--only", letter,
               "--reps", str(args.warmup + 1)], args.peer)
    return float(re.findall(r"^  \S+ rep\d+ ([\d.]+)s", out, re.MULTILINE)[-1])


def our_seconds(args, part: str) -> tuple[float, float]:
    command = [sys.executable, str(HERE / "bench_adversarial.py"), "--only", part,
               "--repeats", "1", "--warmup", str(args.warmup)] + (
                   ["--mirror", str(args.mirror)] if args.mirror else [])
    found = re.search(rf"RESULT harness {part} ([\d.]+) limit ([\d.]+)", run(command, HERE.parent))
    return float(found.group(1)), float(found.group(2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", type=Path, required=True, help="a checkout of the peer at 7ff8909")
    ap.add_argument("--peer-script", type=Path, required=True, help="bench_textgan.py")
    ap.add_argument("--mirror", type=Path, help="the corpus mirror (the authors' oracle)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed repeats in each process before the timed one (both sides)")
    ap.add_argument("--only", default=",".join(PARTS))
    args = ap.parse_args()
    parts = args.only.split(",")
    peer = {part: [] for part in parts}
    ours = {part: [] for part in parts}
    limit = {}
    for round_ in range(args.rounds):
        for part in parts:
            peer[part].append(peer_seconds(args, PARTS[part][0]))
            seconds, limit[part] = our_seconds(args, part)
            ours[part].append(seconds)
            print(f"round {round_ + 1}, {part}: peer {peer[part][-1]:.2f} s, "
                  f"harness {seconds:.2f} s", flush=True)
    print("\n| work | TextGAN-PyTorch 7ff8909 | harness | ratio | harness limit | harness / limit |")
    print("| --- | --- | --- | --- | --- | --- |")
    for part in parts:
        p, o = statistics.median(peer[part]), statistics.median(ours[part])
        print(f"| {PARTS[part][1]} | {p:.2f} s | {o:.2f} s | {p / o:.1f}x | "
              f"{limit[part]:.2f} s | {o / limit[part]:.2f} |")
    print(f"\nmedians of {args.rounds} interleaved rounds; each side in its own process, "
          f"timed after {args.warmup} untimed repeat(s)")


if __name__ == "__main__":
    main()
