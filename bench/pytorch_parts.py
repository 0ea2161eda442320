"""B2's step taken apart in PyTorch eager, the reference for `cargo bench --bench parts`:
milliseconds of forward and backward (medians of 60 repeats after 3 warm-up ones) for
- decoder+ce: Linear(200, 10000) on a [400, 200] input, mean cross-entropy;
- decoder: the same linear layer, its output summed;
- lstm: Embedding(10000, 200) and a two-layer LSTM(200, 200) (batch first), its output summed.

Usage: python bench/pytorch_parts.py [--threads T]
Prints: part  forward_ms=...  backward_ms=...
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timed(name, reps, forward, params):
    fwd, bwd = [], []
    for i in range(reps + 3):
        for p in params:  # a fresh gradient every repeat, as an optimizer's zero_grad leaves it
            p.grad = None
        t0 = time.perf_counter()
        loss = forward()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i >= 3:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    print(f"{name}\tforward_ms={statistics.median(fwd):.2f}\tbackward_ms={statistics.median(bwd):.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"pytorch {torch.__version__} threads={torch.get_num_threads()}")
    torch.manual_seed(0)
    batch, seq, vocab, width = 20, 20, 10_000, 200
    n = batch * seq
    emb = nn.Embedding(vocab, width)
    lstm = nn.LSTM(width, width, 2, batch_first=True)
    decoder = nn.Linear(width, vocab)
    ids = torch.randint(0, vocab, (batch, seq))
    targets = torch.randint(0, vocab, (n,))
    h = (torch.randn(n, width) * 0.5).requires_grad_()
    reps = 60
    dec_params = [h, *decoder.parameters()]
    timed("decoder+ce", reps, lambda: F.cross_entropy(decoder(h), targets), dec_params)
    timed("decoder", reps, lambda: decoder(h).sum(), dec_params)
    timed("lstm", reps, lambda: lstm(emb(ids))[0].sum(), [*emb.parameters(), *lstm.parameters()])


if __name__ == "__main__":
    main()
