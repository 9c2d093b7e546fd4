"""CoT: cooperative training (Lu, Yu, Feng, Zhu, Zhang and Yu, ICML 2019, arXiv 1804.03782),
a method plugin that lives outside the harness.

Two LSTM language models train together. The mediator M learns, by maximum likelihood, the
balanced mixture (P + G) / 2 of real sequences and the generator's own; the generator G then
minimises, on sequences it samples, sum_t KL(G(.|s_<t) || M(.|s_<t)): at every step an exact
expectation over the whole vocabulary, so neither a policy gradient nor any sampled reward is
involved. With M at its optimum this estimates and minimises the Jensen-Shannon divergence
between P and G (the paper, Section 3).

Where ours departs from the authors' code, desire2020/CoT @05f3908 (cot.py, dataloader.py,
by line), and how each profile has it:

 difference        authors' code                    ours: default, paper   ours: authors
 ----------------  -------------------------------  ---------------------  -------------
 the real rows of  int(N / B) full batches of the   a fresh order each     as theirs
 a cooperative     file in order, the rest          epoch, every row, the
 epoch             dropped, the same each epoch:    last batch short: 157
                   156 steps at N = 9,984 or        steps at 10,000
                   10,000, B = 64 (cot.py 188,
                   200; dataloader.py 20-28)

Their 156: cot.py line 121 writes int(10,000 / 64) x 64 = 9,984 oracle rows (line 36),
create_batches keeps int(9,984 / 64) = 156 batches (dataloader.py 20-22), each mediator
step takes next_batch() (cot.py 188), whose pointer cycles modulo 156 (dataloader.py 27) and
an epoch is those 156 steps (cot.py 200). Ours, ``real_order`` "file": int(N / B) full
batches of the training rows in order (156 on our 10,000), the same every epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness import Method, hookimpl
from harness.api import RunContext
from harness.config import require
from harness.generator import LSTMGenerator, State
from harness.training import epoch_order, new_generator, train_step

PHASE = "cooperative"  # the curve rows and checkpoints of cooperative training
WARMUP = "mediator"    # the mediator's warm-up, the generator held fixed


@hookimpl
def register_methods(register):
    register(Cot())


@dataclass
class CotConfig:
    pretrain_epochs: int = 15      # MLE epochs first, shared with the mle run; 0 trains from
                                   # scratch, as the paper and the authors' code (PRE_EPOCH_NUM 0)
    batch_size: int = 64           # MLE batch; generator samples per step; real rows per mediator
                                   # step, joined by as many generated ones (the authors: 64)
    lr: float = 0.01               # MLE pre-training Adam, as the mle method
    grad_clip: float = 5.0         # MLE pre-training's gradient-norm clip, as the mle method
    emb_dim: int = 32              # the shared generator's sizes, as the authors
    hidden_dim: int = 32
    shuffle: bool = True           # MLE pre-training shuffles (see the mle method)
    eval_every: int = 5            # MLE epochs between curve points
    mediator_warmup_epochs: int = 1  # epochs training the mediator alone before the generator
                                   # moves: a fresh mediator is a poor target for an MLE-trained
                                   # generator (ours; the paper trains both from scratch: 0)
    generator_lr: float = 1e-3     # generator Adam in cooperative training, betas (0.9, 0.95)
                                   # (the authors' generator.py at 05f3908)
    generator_grad_clip: float = 0.0  # its gradient-norm clip; 0: none, as the authors' code
                                   # at 05f3908 (their 5.0 went with the 1e-2 rate in decfd1f)
    mediator_emb_dim: int = 64     # the mediator: twice the generator's sizes, as the authors
    mediator_hidden_dim: int = 64
    mediator_lr: float = 3e-3      # mediator Adam, betas (0.9, 0.95), no clip: the authors'
                                   # cot.py (3e-3) and mediator.py (betas)
    mediator_dropout: float = 0.5  # dropout on the mediator's LSTM output while it trains
                                   # (the authors' M_DROPOUT_RATE, a keep rate of 0.5)
    cot_epochs: int = 10           # cooperative epochs: one pass of the real training rows
                                   # through the mediator, one generator step per mediator step
                                   # (paper profile: the authors' 200,000 steps)
    cot_eval_every: int = 2        # cooperative epochs between curve points
    real_order: str = "shuffled"   # the real rows of a cooperative epoch: "shuffled", a fresh
                                   # order, every row, the last batch short; "file": the rows in
                                   # order, int(rows / batch_size) full batches, the rest dropped
                                   # (the authors' cot.py line 188, next_batch() of their
                                   # dataloader.py lines 20-28; an epoch of 156 steps, line 200)

    def __post_init__(self):
        require(self, positive=("grad_clip", "generator_lr", "mediator_lr"),
                fractions=("mediator_dropout",), choices={"real_order": ("shuffled", "file")},
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every",
                              "mediator_emb_dim", "mediator_hidden_dim", "cot_eval_every"))
        for name in ("pretrain_epochs", "mediator_warmup_epochs", "cot_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, not {getattr(self, name)}")


# The authors' code (desire2020/CoT cot.py): no MLE pre-training, TOTAL_BATCH 200,000 steps
# of 64 sequences; on the oracle's 10,000 rows one epoch is 156 steps, so 1,282 epochs.
# Their NLL-oracle was evaluated every 100 steps; here every 5 epochs (780 steps).
PAPER = {"pretrain_epochs": 0, "mediator_warmup_epochs": 0, "cot_epochs": 1282,
         "cot_eval_every": 5}
# The authors' code at one commit, desire2020/CoT @05f3908 (after decfd1f of 2018-11-09
# moved the generator from Adam 1e-2 with a clip at 5.0 to 1e-3 without one): the paper
# profile with that commit's optimisers, which are this Config's defaults (generator Adam
# 1e-3, betas 0.9/0.95, no clip; mediator Adam 3e-3, betas 0.9/0.95), stated again here so
# that a change of defaults cannot move it; and their loader's epoch: the real rows in file
# order, int(rows / 64) = 156 full batches a pass (cot.py lines 188, 200; dataloader.py 20-28).
AUTHORS = {**PAPER, "generator_lr": 1e-3, "generator_grad_clip": 0.0, "mediator_lr": 3e-3,
           "real_order": "file"}


class Cot(Method):
    """CoT: a generator trained against a maximum-likelihood mediator of the balanced mixture."""

    name = "cot"
    Config = CotConfig
    profiles = {"paper": PAPER, "authors": AUTHORS}
    starts_from = ("mle",)  # the default profile starts from the shared MLE run

    def train(self, ctx: RunContext) -> LSTMGenerator:
        cfg, corpus = ctx.config, ctx.corpus
        resumed = ctx.resume_phase
        if resumed in (WARMUP, PHASE) or cfg.pretrain_epochs == 0:
            generator = new_generator(corpus, cfg.emb_dim, cfg.hidden_dim, ctx.device)
        else:
            generator = ctx.start_from(
                "mle", epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                grad_clip=cfg.grad_clip, emb_dim=cfg.emb_dim, hidden_dim=cfg.hidden_dim,
                shuffle=cfg.shuffle, eval_every=cfg.eval_every)
        mediator = Mediator(corpus.vocab_size, corpus.seq_len, cfg.mediator_emb_dim,
                            cfg.mediator_hidden_dim, corpus.start_token,
                            cfg.mediator_dropout).to(ctx.device)
        training = CooperativeTraining(ctx, generator, mediator)
        if resumed is None and cfg.pretrain_epochs == 0:
            ctx.record(generator, phase=PHASE, epoch=0)  # the untrained start of the curve

        if resumed != PHASE:  # the mediator's warm-up: one curve point, after its last epoch
            warmup = ctx.phase(WARMUP, cfg.mediator_warmup_epochs, training.parts,
                               record_every=cfg.mediator_warmup_epochs,
                               desc=f"cot mediator {corpus.name}")
            for _ in warmup:
                _, balanced = training.epoch(train_generator=False)
                warmup.record(phase=WARMUP, epoch=cfg.pretrain_epochs, balanced_nll=balanced)

        cooperative = ctx.phase(PHASE, cfg.cot_epochs, training.parts,
                                record_every=cfg.cot_eval_every, desc=f"cot {corpus.name}")
        for epoch in cooperative:
            kl, balanced = training.epoch(train_generator=True)
            cooperative.record(generator, phase=PHASE, epoch=cfg.pretrain_epochs + epoch + 1,
                               generator_kl=kl, balanced_nll=balanced)
        return generator


class CooperativeTraining:
    """The state of cooperative training (both models, their optimisers, the random
    streams) and one epoch of it: a pass over the real training rows in batches, each
    batch one generator step, then one mediator step on it and as many generated rows."""

    def __init__(self, ctx: RunContext, generator: LSTMGenerator, mediator: Mediator):
        cfg = ctx.config
        self.ctx, self.generator, self.mediator = ctx, generator, mediator
        self.generator_opt = torch.optim.Adam(generator.parameters(), lr=cfg.generator_lr,
                                              betas=(0.9, 0.95))
        self.mediator_opt = torch.optim.Adam(mediator.parameters(), lr=cfg.mediator_lr,
                                             betas=(0.9, 0.95))
        self.sampling = ctx.rng("cot_sampling", ctx.device)
        self.real_order = ctx.rng("cot_real_order")
        self.parts = {"generator": generator, "generator_optimizer": self.generator_opt,
                      "mediator": mediator, "mediator_optimizer": self.mediator_opt,
                      "sampling_rng": self.sampling, "real_order_rng": self.real_order}

    def epoch(self, train_generator: bool) -> tuple[float | None, float]:
        """One pass; the mean generator KL (None when it did not train) and the mean
        balanced NLL of the mediator."""
        cfg, train = self.ctx.config, self.ctx.corpus.train
        kls, balanced = [], []
        for rows in real_batches(len(train), cfg.batch_size, self.real_order, cfg.real_order):
            if train_generator:
                kls.append(generator_step(self.generator, self.mediator, self.generator_opt,
                                          self.sampling, cfg.batch_size,
                                          cfg.generator_grad_clip or None))
            real = train[rows].to(self.ctx.device)
            generated = self.generator.sample(len(real), generator=self.sampling)
            balanced.append(mediator_step(self.mediator, self.mediator_opt, real, generated))
        return (sum(kls) / len(kls) if kls else None), sum(balanced) / len(balanced)


def real_batches(rows: int, batch_size: int, rng: torch.Generator, order: str = "shuffled"
                 ) -> list[torch.Tensor]:
    """The row indices of the real batches of a cooperative epoch over ``rows`` rows, one
    step each. "shuffled": a fresh permutation from ``rng``, every row, the last batch
    short. "file": the authors' (cot.py line 188 and their Gen_Data_loader, dataloader.py
    lines 20-28): int(rows / batch_size) full batches of the rows in order, the rest
    dropped, the same every epoch; ``rng`` is not drawn from (it is still made and
    checkpointed: no other stream moves; ``harness.training.epoch_order``)."""
    return list(epoch_order(rows, batch_size, order == "shuffled", rng).split(batch_size))


class Mediator(LSTMGenerator):
    """The mediator: an LSTM language model like the generator, with dropout on its LSTM
    output (active in training mode only), as the authors' mediator."""

    def __init__(self, vocab_size: int, seq_len: int, emb_dim: int, hidden_dim: int,
                 start_token: int, dropout: float):
        super().__init__(vocab_size, seq_len, emb_dim, hidden_dim, start_token=start_token)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        hidden, state = self.lstm(self.embedding(inputs), state)
        return self.output(self.dropout(hidden)), state


def cooperative_loss(generator_logits: torch.Tensor,
                     mediator_log_probs: torch.Tensor) -> torch.Tensor:
    """The generator's loss per sequence, shape [n]: sum over steps t of
    KL(G(.|s_<t) || M(.|s_<t)) = sum_t sum_v G(v|s_<t) (log G(v|s_<t) - log M(v|s_<t)),
    the negative of the paper's generator objective. ``generator_logits`` [n, T, V] are
    differentiable; ``mediator_log_probs`` [n, T, V] are a fixed target.

    The expectation over v is exact: every word of the vocabulary counts at every step, so
    the gradient needs no estimator; only the prefixes s_<t are sampled from G."""
    log_g = F.log_softmax(generator_logits, dim=-1)
    return (log_g.exp() * (log_g - mediator_log_probs)).sum(dim=(1, 2))


def balanced_nll(mediator: Mediator, real: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """The mediator's maximum-likelihood loss on the balanced mixture: the mean token NLL
    over as many real sequences as generated ones, i.e. (NLL_real + NLL_generated) / 2."""
    if len(real) != len(generated):
        raise ValueError(f"the mixture must be balanced: {len(real)} real, "
                         f"{len(generated)} generated sequences")
    mixture = torch.cat([real, generated])
    logits, _ = mediator(mediator.shifted_inputs(mixture))
    return F.cross_entropy(logits.flatten(0, 1), mixture.flatten())


def generator_step(generator: LSTMGenerator, mediator: Mediator,
                   optimizer: torch.optim.Optimizer, rng: torch.Generator, batch_size: int,
                   grad_clip: float | None) -> float:
    """One cooperative update of the generator on ``batch_size`` of its own samples (its
    gradient norm clipped to ``grad_clip`` unless None); the mean per-sequence KL to the
    mediator before the update."""
    samples = generator.sample(batch_size, generator=rng)
    mediator.eval()  # the target without dropout, as the authors' get_reward
    with torch.no_grad():
        target = F.log_softmax(mediator(mediator.shifted_inputs(samples))[0], dim=-1)
    logits, _ = generator(generator.shifted_inputs(samples))
    per_sequence = cooperative_loss(logits, target)
    # Divided by the length, as the authors' g_loss.
    train_step(per_sequence.mean() / samples.shape[1], optimizer, "the CoT generator loss",
               generator.parameters(), grad_clip)
    return per_sequence.mean().item()


def mediator_step(mediator: Mediator, optimizer: torch.optim.Optimizer, real: torch.Tensor,
                  generated: torch.Tensor) -> float:
    """One maximum-likelihood update of the mediator on the balanced mixture; its loss."""
    mediator.train()
    return train_step(balanced_nll(mediator, real, generated), optimizer,
                      "the CoT mediator loss")
