"""Time one SeqGAN adversarial generator step, naive rollout loop against the batched one.

Paper sizes on the authors' oracle: 64 sequences sampled, 16 completions of each of
the 19 prefixes, the paper's CNN discriminator scoring every completion, then the
policy-gradient update. (a) is the loop of the authors' code and the PyTorch ports
(torch.multinomial, one prefix length and one rollout at a time), (b) is
harness.rollout.Rollout.rewards. Also times the other pieces of a SeqGAN run.

    python benchmarks/bench_adversarial.py [--repeats 3] [--mirror DIR] [--batch 64]
                                           [--rollouts 16] [--n-samples 10000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from harness_plugins.adversarial import PAPER, PAPER_L2, SMALL, Discriminator, train_discriminator
from harness.evaluate import mean_token_nll
from harness.generator import LSTMGenerator
from harness.oracle import random_oracle
from harness_datasets.oracle import seqgan_oracle
from harness_plugins.adversarial import Rollout
from harness.training import mle_epoch

DEFAULT_MIRROR = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora"


def load_oracle(mirror: Path) -> LSTMGenerator:
    if (mirror / "seqgan_oracle" / "target_params.npz").exists():
        print(f"oracle: the authors' target_params from {mirror.resolve()}")
        return seqgan_oracle(mirror)
    print(f"oracle: no mirror at {mirror}; using random_oracle(5000, 20, 32, 32) instead")
    return random_oracle(5000, 20, 32, 32)


WIDTH = 52


def show(label: str, seconds: float) -> None:
    print(f"{label:<{WIDTH}}: {seconds:7.2f} s", flush=True)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn, repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeats))


def adversarial_step(gen, optimizer, rollout, rewards, batch, rng) -> None:
    """Sample, reward every token, take the REINFORCE step, move the rollout policy."""
    sequences = gen.sample(batch, generator=rng)
    q = rewards(sequences)
    loss = -(gen.token_log_probs(sequences) * q).sum(dim=1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(gen.parameters(), 5.0)
    optimizer.step()
    rollout.update(gen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", type=Path,
                    default=Path(os.environ.get("HARNESS_DATA_MIRROR") or DEFAULT_MIRROR))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="sequences per generator step")
    ap.add_argument("--rollouts", type=int, default=16, help="completions per prefix")
    ap.add_argument("--n-samples", type=int, default=10_000,
                    help="sequences for sampling, the MLE epoch and each discriminator class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: leave torch's default)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = torch.Generator().manual_seed(args.seed)
    oracle = load_oracle(args.mirror)
    vocab, length = oracle.vocab_size, oracle.seq_len
    gen = LSTMGenerator(vocab, length, 32, 32, start_token=oracle.start_token)
    g_opt = torch.optim.Adam(gen.parameters(), lr=0.01)
    rollout = Rollout(gen, 0.8)
    disc = Discriminator(vocab, length, **PAPER)
    n, r = args.batch, args.rollouts
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; vocabulary {vocab}, "
          f"length {length}; median of {args.repeats}; load average before: "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"adversarial generator step: {n} sequences x {length - 1} prefixes x {r} completions "
          f"= {n * (length - 1) * r:,} rows scored by the PAPER discriminator, PG update")

    def naive(seqs):
        return rollout.rewards_naive(seqs, r, disc.prob_real, rng, multinomial=True)

    def ours(seqs):
        return rollout.rewards(seqs, r, disc.prob_real, rng)

    t_naive, t_ours = [], []
    for _ in range(args.repeats):  # interleaved, so drifting background load hits both alike
        t_naive.append(timed(lambda: adversarial_step(gen, g_opt, rollout, naive, n, rng)))
        t_ours.append(timed(lambda: adversarial_step(gen, g_opt, rollout, ours, n, rng)))
    a, b = statistics.median(t_naive), statistics.median(t_ours)
    show("  (a) naive loop, torch.multinomial", a)
    show("  (b) batched rollout (ours)", b)
    print(f"  {'speed-up (a) / (b)':<{WIDTH - 2}}: {a / b:7.1f}x")

    sequences = gen.sample(n, generator=rng)
    rows = torch.cat([sequences] * ((length - 1) * r))

    def zero(rows):
        return torch.zeros(len(rows))

    def convolved(rows):  # chunks of at most vocab rows: prob_real convolves, no look-up
        return torch.cat([disc.prob_real(rows[i:i + vocab]) for i in range(0, len(rows), vocab)])

    show("  in (b): the rollout sampling alone",
         median_time(lambda: rollout.rewards(sequences, r, zero, rng), args.repeats))
    show(f"  in (b): PAPER D on {len(rows):,} rows",
         median_time(lambda: disc.prob_real(rows), args.repeats))
    show("  (the same, convolved, not looked up)", median_time(lambda: convolved(rows), args.repeats))

    m = args.n_samples
    show(f"sample {m:,} sequences + NLL-oracle",
         median_time(lambda: mean_token_nll(oracle, gen.sample(m, generator=rng)), args.repeats))
    real = oracle.sample(m, generator=rng)
    show(f"one MLE epoch, {m:,} x {length}, batch 64",
         median_time(lambda: mle_epoch(gen, real, g_opt, 64, 5.0, rng), args.repeats))
    fake = gen.sample(m, generator=rng)
    for name, size in (("PAPER", PAPER), ("SMALL", SMALL)):
        d = Discriminator(vocab, length, **size)
        d_opt = torch.optim.Adam(d.parameters(), lr=1e-4)
        params = sum(p.numel() for p in d.parameters())
        show(f"one D epoch, {name} ({params / 1e6:.2f}M params), {m:,} + {m:,}",
             median_time(lambda: train_discriminator(d, d_opt, real, fake, 1, 64, PAPER_L2, rng),
                         args.repeats))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
