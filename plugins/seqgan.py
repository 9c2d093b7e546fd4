"""SeqGAN (Yu et al. 2017): the MLE-pre-trained generator improved by policy gradient,
rewarded by a CNN discriminator through Monte-Carlo rollout.

Where the paper's text and the authors' code (LantaoYu/SeqGAN @4152436, MLE_SeqGAN/) differ:

| | the paper's text | the authors' code | ours: default, paper | ours: authors |
| --- | --- | --- | --- | --- |
| policy-gradient loss | an expectation | summed over batch and tokens, then clip 5.0 (model.py 114-124) | averaged over the batch | summed |
| rollout policy | G_beta, the generator | the live generator (rollout.py: its update writes tensors the graph never reads) | the live generator | the live generator |
| generator Adam | not stated | 1e-3 at @4152436 ("ignore learning rate"), 1e-2 at e2b52fb | 1e-2 | 1e-3 |
| LSTM gate biases | not stated | one per gate, N(0, 0.1) (model.py 142-163) | two (``nn.LSTM``'s bias_ih and bias_hh, N(0, 0.1) each) | one (bias_hh zero and frozen, ``lstm_biases=1``) |
| discriminator highway | not stated | no biases: both layers rnn_cell._linear(..., bias=0), gate bias 0 (text_classifier.py 16, 19, 84); the later code's linear has them (discriminator.py 6-32 @e2b52fb) | biases, as @e2b52fb | none (``highway_bias=False``) |
| MLE pre-training order | not stated | the file in order, int(10,000 / 64) = 156 whole batches an epoch (gen_dataloader.py 19-27; dataloader.py 4-27 @e2b52fb) | default: shuffled; paper: the file in order, whole batches | the file in order, whole batches |
| discriminator rows | not stated | reshuffled every epoch (dis_dataloader.py 88-102); once a round, whole batches, at e2b52fb (dataloader.py 63-75) | default: every epoch; paper: once a round (``disc_shuffle``) | every epoch |
| NLL-oracle kept | the result | the best of a curve read after every batch, on 9,984 fresh samples each time, inside the adversarial loop only (sequence_gan.py 66, 218-229) | final, and the best of the adversarial phase labelled | the same, every point on fresh samples |
"""
from __future__ import annotations

from dataclasses import dataclass

from harness import Method, hookimpl
from harness.config import require
from harness.training import GeneratorSettings, require_generator_settings
from harness_plugins import adversarial as adv


@hookimpl
def register_methods(register):
    register(SeqGan())


@dataclass
class SeqGanConfig(GeneratorSettings):
    pretrain_epochs: int = 8          # MLE pre-training (shared with the mle method's run)
    batch_size: int = 64              # generator batch, for MLE and policy gradient
    lr: float = 0.01                  # generator Adam, both phases (the authors' 2016 code: 1e-3)
    grad_clip: float = 5.0            # generator gradient-norm clip, as the authors
    emb_dim: int = 32                 # the shared generator's sizes, as the authors
    hidden_dim: int = 32
    lstm_biases: int = 2              # LSTM biases per gate: 2 as nn.LSTM, 1 as the authors'
                                      # LSTM (bias_hh zero and frozen)
    shuffle: bool = True              # MLE pre-training shuffles (see the mle method)
    eval_every: int = 5               # MLE epochs between curve points
    disc_size: str = "small"          # "small" (CPU) or "paper" (the authors' 1,720 filters)
    disc_lr: float = 1e-4             # discriminator Adam, as the authors
    disc_l2: float = 0.2              # L2 on the discriminator's output layer, as the authors
    highway_bias: bool = True         # the discriminator's highway has biases, as the later code
                                      # (discriminator.py 6-32 @e2b52fb); @4152436 it has none
                                      # (MLE_SeqGAN/text_classifier.py 16, 19: _linear(.., 0))
    disc_batch_size: int = 64
    disc_negatives: int = 2000        # generated sequences per discriminator round (paper: 10,000)
    disc_pretrain_rounds: int = 2     # discriminator pre-training rounds (paper: 50)
    disc_epochs: int = 1              # epochs per discriminator round, k (paper: 3)
    disc_shuffle: str = "epoch"       # its mixed real and fake rows reshuffled every "epoch"
                                      # (dis_dataloader.py 88-102 @4152436) or once a "round",
                                      # whole batches (dataloader.py 63-75 @e2b52fb)
    adv_batches: int = 10             # adversarial batches (paper: 200)
    g_steps: int = 1                  # generator updates per adversarial batch, g
    d_steps: int = 1                  # discriminator rounds per adversarial batch, d (paper: 5)
    n_rollouts: int = 4               # Monte-Carlo completions per prefix (paper: 16)
    rollout_update_rate: float = 0.0  # 0: the rollout policy is the generator, as the paper
                                      # says and the authors' code does (see adversarial.Rollout)
    adv_eval_every: int = 5           # adversarial batches between curve points (the authors: 5)
    pg_loss: str = "mean"             # the policy-gradient loss over the batch: "mean" (the
                                      # paper's expectation) or "sum" (the authors' code; see
                                      # adversarial.PG_LOSSES)

    def __post_init__(self):
        require(self, positive=("grad_clip",), fractions=("rollout_update_rate",),
                choices={"pg_loss": adv.PG_LOSSES, "disc_size": ("small", "paper"),
                         "disc_shuffle": adv.DISC_SHUFFLES},
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every",
                              "disc_batch_size", "disc_negatives", "g_steps", "n_rollouts",
                              "adv_eval_every"))
        require_generator_settings(self)


# The paper's settings as the authors' later code (LantaoYu/SeqGAN sequence_gan.py @e2b52fb)
# has them: PRE_EPOCH_NUM 120, 50 discriminator pre-training rounds of 3 epochs on 10,000
# fresh negatives, TOTAL_BATCH 200 with 1 generator step, 16 rollouts and 5 x 3
# discriminator epochs, Adam 0.01 for the generator and 1e-4 for the discriminator; MLE
# over the file in order (dataloader.py 4-27), the discriminator's rows shuffled once a round
# and passed over in that order every epoch (dataloader.py 63-75, sequence_gan.py 125-129).
PAPER = {"pretrain_epochs": 120, "disc_size": "paper", "disc_negatives": 10_000,
         "disc_pretrain_rounds": 50, "disc_epochs": 3, "adv_batches": 200, "d_steps": 5,
         "n_rollouts": 16, "shuffle": False, "disc_shuffle": "round"}
# The code as published with the paper (@4152436, MLE_SeqGAN/sequence_gan.py): 240 MLE
# epochs, Adam() at its default 1e-3 ("# ignore learning rate"), the file in order,
# TOTAL_BATCH 800 with NLL-oracle after every batch (the best one kept), int(10000 / 64) *
# 64 = 9,984 negatives a round; the rollout reads the live generator (rate 0); the
# policy-gradient loss summed over the batch (model.py lines 114-124); one bias per LSTM
# gate (model.py lines 142-163); a discriminator highway without biases
# (text_classifier.py lines 16, 19).
AUTHORS = {**PAPER, "pretrain_epochs": 240, "lr": 0.001, "shuffle": False, "disc_shuffle": "epoch",
           "adv_batches": 800, "adv_eval_every": 1, "disc_negatives": 9_984, "pg_loss": "sum",
           "lstm_biases": 1, "highway_bias": False}


class SeqGan(Method):
    """SeqGAN: MLE pre-training, then policy gradient rewarded by a CNN discriminator."""

    name = "seqgan"
    best_so_far_phase = adv.PHASE  # sequence_gan.py 226-229 keeps the best inside the loop
    Config = SeqGanConfig
    profiles = {"paper": PAPER, "authors": AUTHORS}
    starts_from = ("mle",)  # executors run the MLE run first and this run reuses its generator

    def conditions(self, config: dict) -> dict[str, str]:
        """How the policy-gradient loss was reduced: the authors' figures summed it, and
        compare only with runs that did."""
        return adv.pg_conditions(config)

    def train(self, ctx):
        cfg = ctx.config
        discriminator = adv.DiscriminatorRounds(ctx, cfg, highway_bias=cfg.highway_bias,
                                                shuffle=cfg.disc_shuffle)
        generator = adv.start_from_mle(ctx, adv.Pretraining(
            "discriminator", cfg.disc_pretrain_rounds, discriminator, discriminator.parts,
            "disc_loss"))

        def between(batch: int) -> dict:
            losses = [discriminator(generator) for _ in range(cfg.d_steps)]
            return {"disc_loss": losses[-1]} if losses else {}

        return adv.train_policy_gradient(
            ctx, generator, discriminator.disc, adv.PolicyGradientSettings.of(cfg),
            epoch_offset=cfg.pretrain_epochs, between=between, extra=discriminator.parts)
