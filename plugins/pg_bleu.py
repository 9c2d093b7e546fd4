"""PG-BLEU: the SeqGAN policy-gradient loop with BLEU against real data as the reward
instead of a discriminator (the paper's baseline).

Where the paper's text and the authors' code (LantaoYu/SeqGAN @4152436, pg_bleu/) differ:

| | the paper's text | the authors' code | ours: default, paper | ours: authors |
| --- | --- | --- | --- | --- |
| reward | BLEU | nltk 3.2's unsmoothed sentence BLEU-3 against ~40% of the training data, 1 rollout (pg_bleu.py) | the same (``bleu_rule=nltk-3.2``) | the same |
| policy-gradient loss | an expectation | summed over batch and tokens, then clip 5.0 (model.py 115-125) | averaged | summed |
| LSTM gate biases | not stated | one per gate, N(0, 0.1) (model.py 145-166) | two (``nn.LSTM``'s bias_ih and bias_hh, N(0, 0.1) each) | one (bias_hh zero and frozen, ``lstm_biases=1``) |
| oracle | SeqGAN's | drawn afresh in TensorFlow (seed 66) | SeqGAN's | SeqGAN's (the figure: not comparable) |
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import Method, hookimpl
from harness.config import require
from harness.training import GeneratorSettings, require_generator_settings
from harness.metrics import BLEU_RULES, BleuReferences
from harness_plugins import adversarial as adv


@hookimpl
def register_methods(register):
    register(PgBleu())


@dataclass
class PgBleuConfig(GeneratorSettings):
    # The authors' pg_bleu/pg_bleu.py (LantaoYu/SeqGAN @4152436): unsmoothed BLEU-3 of
    # nltk 3.2 against a random ~40% of the training data, 1 rollout per prefix.
    pretrain_epochs: int = 8          # MLE pre-training (shared with the mle method's run)
    batch_size: int = 64
    lr: float = 0.01                  # generator Adam, both phases (the authors' 2016 code: 1e-3)
    grad_clip: float = 5.0
    emb_dim: int = 32
    hidden_dim: int = 32
    lstm_biases: int = 2              # LSTM biases per gate: 2 as nn.LSTM, 1 as the authors'
                                      # LSTM (bias_hh zero and frozen)
    shuffle: bool = True
    eval_every: int = 5               # MLE epochs between curve points
    bleu_order: int = 3               # BLEU-n reward, uniform weights (the authors: 3)
    bleu_rule: str = "nltk-3.2"       # the reward's BLEU: "nltk-3.2" (the authors': an order
                                      # without a match is left out, 0 only without a unigram
                                      # match), "strict" (0 when any order has no match; the
                                      # generator collapses), "smoothed" (nltk method1)
    reference_fraction: float = 0.4   # share of the training data used as references
    adv_batches: int = 20             # adversarial batches (paper: 200, as SeqGAN's)
    g_steps: int = 1
    n_rollouts: int = 1               # Monte-Carlo completions per prefix (the authors: 1)
    rollout_update_rate: float = 0.0  # the authors' rollout is the current generator
    adv_eval_every: int = 5
    pg_loss: str = "mean"             # the policy-gradient loss over the batch: "mean" (the
                                      # paper's expectation) or "sum" (the authors' code; see
                                      # adversarial.PG_LOSSES)

    def __post_init__(self):
        require(self, positive=("grad_clip",),
                fractions=("reference_fraction", "rollout_update_rate"),
                choices={"pg_loss": adv.PG_LOSSES, "bleu_rule": BLEU_RULES},
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every", "bleu_order",
                              "g_steps", "n_rollouts", "adv_eval_every"))
        require_generator_settings(self)


class PgBleu(Method):
    """PG-BLEU: SeqGAN's policy-gradient loop rewarded by BLEU against real data."""

    name = "pg-bleu"
    best_so_far_phase = adv.PHASE  # pg_bleu.py 177-180 keeps the best inside the loop
    Config = PgBleuConfig
    starts_from = ("mle",)  # executors run the MLE run first and this run reuses its generator
    # The paper profile keeps the authors' reward and rollout count but shares the 120-epoch
    # MLE pre-training with the other methods, so every adversarial method starts from the
    # very same generator. authors: their 200 MLE epochs and TOTAL_BATCH 800 at Adam's
    # default 1e-3, the file in order, NLL-oracle after every batch (the best one kept), the
    # policy-gradient loss summed over the batch (pg_bleu/model.py lines 115-125), one bias
    # per LSTM gate (pg_bleu/model.py lines 145-166).
    profiles = {"paper": {"pretrain_epochs": 120, "adv_batches": 200, "shuffle": False},
                "authors": {"pretrain_epochs": 200, "adv_batches": 800, "lr": 0.001,
                            "shuffle": False, "adv_eval_every": 1, "pg_loss": "sum",
                            "lstm_biases": 1}}

    def conditions(self, config: dict) -> dict[str, str]:
        return adv.pg_conditions(config)

    def train(self, ctx):
        cfg = ctx.config
        corpus = ctx.corpus
        picked = torch.rand(len(corpus.train), generator=ctx.rng("bleu_references"))
        references = BleuReferences(corpus.sentences(corpus.train[picked < cfg.reference_fraction]),
                                    cfg.bleu_order)

        def score(sequences: torch.Tensor) -> torch.Tensor:
            scores = references.sentence_scores(corpus.sentences(sequences.cpu()),
                                                rule=cfg.bleu_rule)
            return torch.from_numpy(scores).float().to(sequences.device)

        generator = adv.start_from_mle(ctx)
        settings = adv.PolicyGradientSettings.of(cfg)
        return adv.train_policy_gradient(ctx, generator, score, settings,
                                         epoch_offset=cfg.pretrain_epochs)
