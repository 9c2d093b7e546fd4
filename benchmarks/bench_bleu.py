"""Time harness.metrics BLEU against nltk's sentence_bleu (method1).

Default: 2,000 hypotheses x 10,000 references of 20 tokens drawn from a
Zipf-like 5,000-word vocabulary (so higher-order n-grams do match).  nltk is
run on a subset and extrapolated, since it takes ~0.4 s per hypothesis here.

    python benchmarks/bench_bleu.py [--hyps 2000] [--refs 10000] [--len 20]
                                    [--nltk-subset 20] [--max-n 4]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from harness.metrics import BleuReferences, self_bleu


def zipf_sentences(rng: np.random.Generator, count: int, length: int, vocab: int,
                   exponent: float) -> list[list[int]]:
    """Token ids with P(rank k) proportional to 1 / k**exponent."""
    p = 1.0 / np.arange(1, vocab + 1) ** exponent
    return rng.choice(vocab, size=(count, length), p=p / p.sum()).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hyps", type=int, default=2000)
    ap.add_argument("--refs", type=int, default=10000)
    ap.add_argument("--len", type=int, default=20, dest="length")
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of the token distribution")
    ap.add_argument("--nltk-subset", type=int, default=20)
    ap.add_argument("--max-n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    refs = zipf_sentences(rng, args.refs, args.length, args.vocab, args.zipf)
    hyps = zipf_sentences(rng, args.hyps, args.length, args.vocab, args.zipf)
    n = args.max_n
    print(f"BLEU-{n}: {args.hyps} hypotheses x {args.refs} references, {args.length} tokens, "
          f"Zipf({args.zipf}) over {args.vocab} words")

    t0 = time.perf_counter()
    table = BleuReferences(refs, n)
    t1 = time.perf_counter()
    ours = table.sentence_scores(hyps)
    t2 = time.perf_counter()
    ours_total = t2 - t0
    print(f"ours : precompute {t1 - t0:.3f} s + score {t2 - t1:.3f} s = {ours_total:.3f} s "
          f"for {args.hyps} hypotheses (mean BLEU-{n} {ours.mean():.6f})")

    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    method1 = SmoothingFunction().method1
    subset = hyps[: args.nltk_subset]
    t0 = time.perf_counter()
    theirs = [sentence_bleu(refs, h, weights=(1 / n,) * n, smoothing_function=method1)
              for h in subset]
    nltk_sub = time.perf_counter() - t0
    per_hyp = nltk_sub / len(subset)
    nltk_total = per_hyp * args.hyps
    max_diff = float(np.max(np.abs(ours[: len(subset)] - np.asarray(theirs))))
    print(f"nltk : {nltk_sub:.3f} s for {len(subset)} hypotheses ({per_hyp:.3f} s each) "
          f"-> extrapolated {nltk_total:.1f} s for {args.hyps}")
    print(f"agreement on the subset: max |ours - nltk| = {max_diff:.2e} "
          f"({'OK' if max_diff <= 1e-9 else 'MISMATCH'} at 1e-9)")
    print(f"speed-up: {nltk_total / ours_total:,.0f}x (ours incl. precompute vs nltk extrapolated)")

    t0 = time.perf_counter()
    sb = self_bleu(hyps, n)
    print(f"self-BLEU-{n} of the {args.hyps} hypotheses (each vs the other {args.hyps - 1}): "
          f"{sb:.6f} in {time.perf_counter() - t0:.3f} s")
    if max_diff > 1e-9:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
