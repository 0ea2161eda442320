"""Run retrograd's B1-B4 benchmark and PyTorch's reference in one sitting and print the ratios.

Usage (from the repo root):
    python3 bench/compare.py [--threads N] [--steps S] [--rounds R] [--torch-python PATH]

`--torch-python` is an interpreter with torch installed (default: python3). The PyTorch side is
../shared/bench/pytorch_reference.py (the project's reference script); generation speed uses
bench/pytorch_generate.py. Uses only the standard library.

With `--rounds R` (default 1) both sides run R times, alternating, and each side's tokens/s is
the median of its R runs: on a shared machine single runs swing by 20% from minute to minute,
and alternating spreads that noise over both sides alike.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^(\S+)\ttokens/s=(\d+)")


def rates(cmd, env=None):
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    sys.stdout.write(out)
    return {m.group(1): float(m.group(2)) for m in map(LINE.match, out.splitlines()) if m}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--torch-python", default="python3")
    ap.add_argument("--generate", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    env = dict(os.environ)
    rust = ["cargo", "bench", "--bench", "workloads", "--", "--steps", str(a.steps)]
    torch = [a.torch_python, os.path.join(ROOT, "..", "shared", "bench", "pytorch_reference.py"), "--steps", str(a.steps)]
    gen_rust = ["cargo", "bench", "--bench", "workloads", "--", "--generate", str(a.generate)]
    gen_torch = [a.torch_python, os.path.join(ROOT, "bench", "pytorch_generate.py"), "--tokens", str(a.generate)]
    if a.threads:
        rust += ["--threads", str(a.threads)]
        gen_rust += ["--threads", str(a.threads)]
        torch += ["--threads", str(a.threads)]
        gen_torch += ["--threads", str(a.threads)]
    runs = {"ours": {}, "theirs": {}}
    for r in range(a.rounds):
        if a.rounds > 1:
            print(f"--- round {r + 1} of {a.rounds}")
        for side, cmds, e in (("ours", (rust, gen_rust), env), ("theirs", (torch, gen_torch), None)):
            for cmd in cmds:
                for name, rate in rates(cmd, e).items():
                    runs[side].setdefault(name, []).append(rate)
    ours = {n: statistics.median(v) for n, v in runs["ours"].items()}
    theirs = {n: statistics.median(v) for n, v in runs["theirs"].items()}
    what = "median of %d runs" % a.rounds if a.rounds > 1 else "one run"
    print(f"\nworkload\tretrograd tok/s\tpytorch tok/s\tratio\t({what} each)")
    for name in ours:
        if name in theirs:
            print(f"{name}\t{ours[name]:.0f}\t{theirs[name]:.0f}\t{ours[name] / theirs[name]:.2f}x")


if __name__ == "__main__":
    main()
