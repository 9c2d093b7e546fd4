"""Time the pieces of a SeqGAN run at the paper's sizes, each beside its arithmetic limit.

Paper sizes on the authors' oracle (vocabulary 5,000, length 20, LSTM 32, batch 64, the
paper's 1,720-filter CNN discriminator). The parts, each selectable with ``--only``:

  step    one adversarial generator step: 64 sequences x 19 prefixes x 16 completions,
          every completion scored by the discriminator, the policy-gradient update
          (and, inside it, the rollout's sampling alone and the discriminator's scoring)
  sample  sample 10,000 sequences and score them under the oracle (NLL-oracle)
  mle     one MLE epoch over 10,000 oracle sequences, batch 64
  disc    one discriminator epoch, 10,000 real + 10,000 generated rows, batch 64
  naive   the step with the rollout loop of the authors' code and the PyTorch ports
          (torch.multinomial, one prefix and one rollout at a time), against ours

Each line gives the median time, the arithmetic limit (``limits.py``: the work's flops,
exps and streamed bytes at the rates this machine reaches on large operands) and their
ratio, and ends in a ``RESULT harness <part> <seconds>`` line for side_by_side.py.
``--breakdown`` adds, under each line, one profiled call's time by kind of kernel (matmul,
exp, other passes over large tensors, small ops, Python between ops), each over the part
of the limit that kind of kernel does: what stands between the time and its limit.

    python benchmarks/bench_adversarial.py [--only step,sample,mle,disc] [--repeats 3]
                                           [--mirror DIR] [--threads N] [--breakdown]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import limits
from harness.evaluate import mean_token_nll
from harness.generator import LSTMGenerator
from harness.oracle import random_oracle
from harness.training import mle_epoch
from harness_datasets.oracle import seqgan_oracle
from harness_plugins.adversarial import (PAPER, PAPER_L2, SMALL, Discriminator, Rollout,
                                         train_discriminator)

DEFAULT_MIRROR = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora"
PARTS = ("step", "sample", "mle", "disc", "naive")
WIDTH = 50
EMB = HIDDEN = 32


def load_oracle(mirror: Path) -> LSTMGenerator:
    if (mirror / "seqgan_oracle" / "target_params.npz").exists():
        print(f"oracle: the authors' target_params from {mirror.resolve()}")
        return seqgan_oracle(mirror)
    print(f"oracle: no mirror at {mirror}; using random_oracle(5000, 20, 32, 32) instead")
    return random_oracle(5000, 20, 32, 32)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


WARMUP = 0  # untimed calls before each timing (--warmup)
BREAKDOWN = False  # after each timing, one profiled call by kind of kernel (--breakdown)


def median_time(fn, repeats: int) -> float:
    for _ in range(WARMUP):  # a process's first call also pays for kernel set-up
        fn()
    return statistics.median(timed(fn) for _ in range(repeats))


def timed_part(label: str, fn, work: limits.Work, rates: limits.Rates, repeats: int,
               part: str | None = None) -> None:
    """Time ``fn`` beside the limit of ``work``; with --breakdown, where its time goes."""
    seconds = median_time(fn, repeats)
    show(label, seconds, work.seconds(rates), part)
    if BREAKDOWN:
        profiled = limits.breakdown(fn, seconds)
        print(f"{'':<{WIDTH}}  {limits.breakdown_line(*profiled, work.parts(rates))}", flush=True)


def show(label: str, seconds: float, limit: float | None = None, part: str | None = None) -> None:
    bound = f"   limit {limit:6.2f} s   x{seconds / limit:4.2f}" if limit else ""
    print(f"{label:<{WIDTH}}: {seconds:7.2f} s{bound}", flush=True)
    if part:
        print(f"RESULT harness {part} {seconds:.3f} limit {limit or 0:.3f}", flush=True)


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


# --- the work each part must do, for its arithmetic limit ----------------------------

def windows_of(disc: Discriminator) -> dict[int, int]:
    return dict(zip(disc.filter_sizes, disc.num_filters))


def rollout_work(batch: int, rollouts: int, length: int, vocab: int) -> limits.Work:
    """Prefix states (teacher-forced) and every completion token drawn."""
    completion_tokens = batch * rollouts * length * (length - 1) // 2
    return (limits.lstm_steps(batch * length, EMB, HIDDEN)
            + limits.generator_steps(completion_tokens, EMB, HIDDEN, vocab))


def scoring_work(disc: Discriminator, batch: int, rollouts: int, length: int) -> limits.Work:
    """The discriminator on every completion, each window read once: the windows inside a
    prefix are shared by its completions (and its sequence), only the ones reaching into
    the completion are per row; highway and output per row."""
    windows = windows_of(disc)
    per_window = {k: batch * (length - k + 1) + batch * rollouts * sum(
        length - k + 1 - max(0, t - k + 1) for t in range(1, length)) for k in windows}
    rows = batch * rollouts * (length - 1) + batch
    return (limits.conv_lookups(per_window, windows)
            + limits.highway_and_output(rows, sum(disc.num_filters)))


def step_work(disc: Discriminator, batch: int, rollouts: int, length: int, vocab: int
              ) -> limits.Work:
    return (limits.generator_steps(batch * length, EMB, HIDDEN, vocab)
            + training_work(batch * length, vocab)
            + rollout_work(batch, rollouts, length, vocab)
            + scoring_work(disc, batch, rollouts, length))


def training_work(tokens: int, vocab: int) -> limits.Work:
    """A teacher-forced forward and backward pass (the backward's matmuls cost twice the
    forward's)."""
    matmuls = limits.lstm_steps(tokens, EMB, HIDDEN) + limits.projection(tokens, HIDDEN, vocab)
    return limits.generator_steps(tokens, EMB, HIDDEN, vocab) + matmuls * 2


def disc_epoch_work(disc: Discriminator, rows: int, length: int) -> limits.Work:
    emb = disc.embedding.embedding_dim
    forward = (limits.conv_windows(rows, length, emb, windows_of(disc))
               + limits.highway_and_output(rows, sum(disc.num_filters)))
    return forward * 3  # the backward pass costs about twice the forward


# --- the parts -------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", type=Path,
                    default=Path(os.environ.get("HARNESS_DATA_MIRROR") or DEFAULT_MIRROR))
    ap.add_argument("--only", default="step,sample,mle,disc",
                    help=f"comma-separated parts of {', '.join(PARTS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="sequences per generator step")
    ap.add_argument("--rollouts", type=int, default=16, help="completions per prefix")
    ap.add_argument("--n-samples", type=int, default=10_000,
                    help="sequences for sampling, the MLE epoch and each discriminator class")
    ap.add_argument("--warmup", type=int, default=0,
                    help="untimed calls of each part before it is timed")
    ap.add_argument("--breakdown", action="store_true",
                    help="after each timing, one profiled call: its time by kind of kernel "
                         "(matmul, exp, other passes, small ops, Python) over the limit's part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: leave torch's default)")
    args = ap.parse_args()
    global WARMUP, BREAKDOWN
    WARMUP, BREAKDOWN = args.warmup, args.breakdown
    parts = args.only.split(",")
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = torch.Generator().manual_seed(args.seed)
    oracle = load_oracle(args.mirror)
    vocab, length = oracle.vocab_size, oracle.seq_len
    rates = limits.measure()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"this machine: {rates}; median of {args.repeats}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    gen = LSTMGenerator(vocab, length, EMB, HIDDEN, start_token=oracle.start_token)
    g_opt = torch.optim.Adam(gen.parameters(), lr=0.01)
    rollout = Rollout(gen, 0.8)
    disc = Discriminator(vocab, length, **PAPER)
    n, r, m = args.batch, args.rollouts, args.n_samples

    def ours(seqs):
        return rollout.rewards(seqs, r, disc, rng)

    if "step" in parts:
        print(f"adversarial generator step: {n} sequences x {length - 1} prefixes x {r} "
              f"completions = {n * (length - 1) * r:,} rows scored by the PAPER discriminator")
        timed_part("adversarial generator step",
                   lambda: adversarial_step(gen, g_opt, rollout, ours, n, rng),
                   step_work(disc, n, r, length, vocab), rates, args.repeats, "step")
        sequences = gen.sample(n, generator=rng)
        timed_part("  in it: the rollout's sampling",
                   lambda: rollout.rewards(sequences, r, lambda rows: torch.zeros(len(rows)), rng),
                   rollout_work(n, r, length, vocab), rates, args.repeats)
        completed = torch.cat([sequences] * ((length - 1) * r))  # rows ordered (t, n, b)
        timed_part(f"  in it: the discriminator on {len(completed) + n:,} rows",
                   lambda: disc.prob_real_of_rollout(completed, sequences),
                   scoring_work(disc, n, r, length), rates, args.repeats)
    if "naive" in parts:
        def naive(seqs):
            return rollout.rewards_naive(seqs, r, disc.prob_real, rng, multinomial=True)

        t_naive, t_ours = [], []
        for _ in range(args.repeats):  # interleaved: drifting background load hits both alike
            t_naive.append(timed(lambda: adversarial_step(gen, g_opt, rollout, naive, n, rng)))
            t_ours.append(timed(lambda: adversarial_step(gen, g_opt, rollout, ours, n, rng)))
        a, b = statistics.median(t_naive), statistics.median(t_ours)
        show("step, the naive loop (torch.multinomial)", a)
        show("step, ours", b)
        print(f"{'speed-up':<{WIDTH}}: {a / b:7.1f}x")
    if "sample" in parts:
        timed_part(f"sample {m:,} sequences + NLL-oracle",
                   lambda: mean_token_nll(oracle, gen.sample(m, generator=rng)),
                   limits.generator_steps(m * length, EMB, HIDDEN, vocab) * 2, rates,
                   args.repeats, "sample")
    if "mle" in parts:
        real = oracle.sample(m, generator=rng)
        timed_part(f"one MLE epoch, {m:,} x {length}, batch 64",
                   lambda: mle_epoch(gen, real, g_opt, 64, 5.0, rng),
                   training_work(m * length, vocab), rates, args.repeats, "mle")
    if "disc" in parts:
        real, fake = oracle.sample(m, generator=rng), gen.sample(m, generator=rng)
        for name, size in (("PAPER", PAPER), ("SMALL", SMALL)):
            d = Discriminator(vocab, length, **size)
            d_opt = torch.optim.Adam(d.parameters(), lr=1e-4)
            params = sum(p.numel() for p in d.parameters())
            timed_part(f"one D epoch, {name} ({params / 1e6:.2f}M params), {m:,} + {m:,}",
                       lambda: train_discriminator(d, d_opt, real, fake, 1, 64, PAPER_L2, rng),
                       disc_epoch_work(d, 2 * m, length), rates, args.repeats,
                       "disc" if name == "PAPER" else None)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
