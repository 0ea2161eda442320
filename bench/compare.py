"""Run retrograd's B1-B4 benchmark and PyTorch's reference in one sitting and print the ratios.

Usage (from the repo root):
    python3 bench/compare.py [--threads N] [--steps S] [--rounds R] [--torch-python PATH]

`--torch-python` is an interpreter with torch installed (default: python3). The PyTorch side is
../shared/bench/pytorch_reference.py (the project's reference script); generation speed uses
bench/pytorch_generate.py. Uses only the standard library.

With `--rounds R` (default 1) both sides run R times, alternating, and each side's tokens/s is
the median of its R runs: on a shared machine single runs swing by 20% from minute to minute,
and alternating spreads that noise over both sides alike. Each workload's line also shows its
target (issue 7) and, with several rounds, every round's own ratio. A sitting with several
rounds is called unsettled when a round read B3 below its 10x (B3 is overhead-bound and
steady when the host is, so a low round means the host took the CPU) or B1's rounds spread by
0.25 or more; docs/PERFORMANCE.md keeps such sittings apart.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^(\S+)\ttokens/s=(\d+)")
# issue 7's targets, as ratios retrograd / PyTorch
TARGETS = {"B1-char-lstm": 1.2, "B2-word-lstm": 1.1, "B3-tiny-rnn": 10.0, "B4-bigru": 2.0, "generate-B1": 10.0}


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
    print(f"\nworkload\tretrograd tok/s\tpytorch tok/s\tratio\t({what} each)\ttarget\trounds")
    per_round = {}
    for name in ours:
        if name in theirs:
            per_round[name] = [o / t for o, t in zip(runs["ours"][name], runs["theirs"][name])]
            target = TARGETS.get(name)
            verdict = "" if target is None else f"{target:g}x {'met' if ours[name] / theirs[name] >= target else 'BELOW'}"
            each = ", ".join(f"{r:.2f}" for r in per_round[name]) if a.rounds > 1 else ""
            print(f"{name}\t{ours[name]:.0f}\t{theirs[name]:.0f}\t{ours[name] / theirs[name]:.2f}x\t{verdict}\t{each}")
    if a.rounds > 1:
        reasons = []
        b3 = per_round.get("B3-tiny-rnn", [])
        if b3 and min(b3) < TARGETS["B3-tiny-rnn"]:
            reasons.append(f"a B3 round read {min(b3):.1f}x")
        b1 = per_round.get("B1-char-lstm", [])
        if b1 and max(b1) - min(b1) >= 0.25:
            reasons.append(f"B1's rounds spread from {min(b1):.2f}x to {max(b1):.2f}x")
        print("sitting: " + ("unsettled (" + "; ".join(reasons) + ")" if reasons else "settled"))


if __name__ == "__main__":
    main()
