"""Batch-1 sampling speed of PyTorch eager on the B1 model (Embedding(65,64) -> LSTM 256 ->
Linear(256,65)), the reference for `cargo bench --bench workloads -- --generate N`.

Usage: python bench/pytorch_generate.py [--tokens N] [--threads T]
Prints: generate-B1  tokens/s=...  us/token=...
"""
import argparse
import time

import torch
import torch.nn as nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    emb, lstm, out = nn.Embedding(65, 64), nn.LSTM(64, 256), nn.Linear(256, 65)
    tok = torch.zeros(1, 1, dtype=torch.long)
    state = None
    with torch.no_grad():
        for _ in range(50):  # warm-up
            h, state = lstm(emb(tok), state)
        state = None
        t = time.perf_counter()
        for _ in range(a.tokens):
            h, state = lstm(emb(tok), state)
            p = torch.softmax(out(h[0]), dim=-1)
            tok = torch.multinomial(p, 1).view(1, 1)
        dt = time.perf_counter() - t
    print(f"torch {torch.__version__} threads={torch.get_num_threads()}")
    print(f"generate-B1\ttokens/s={a.tokens / dt:.0f}\tus/token={dt / a.tokens * 1e6:.1f}")


if __name__ == "__main__":
    main()
