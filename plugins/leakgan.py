"""LeakGAN (Guo et al., AAAI 2018): a hierarchical generator steered by features leaked
from the discriminator.

Where the paper's text and its authors' code differ. Their code: CR-Gjx/LeakGAN @4044de6,
``Synthetic Data/`` at length 20, the version with the x1.5 (the one the paper's figures came
from; ``No Temperature/Synthetic Data/``, added at dc3360e, samples at x1.0 and trains at
rate 0.01; what is cited below was so in substance from the first commit, 3bf2d03, though
Main.py's lines moved). L: its LeakGANModel.py, M: Main.py, D: Discriminator.py, dl:
dataloader.py, by line; [n]: the notes.

 difference       paper text          authors' code            ours: default,    ours: authors
                                                                paper
 ---------------  ------------------  -----------------------  ----------------  --------------
 sampling logits  softmax(O_t w_t)    x1.5 when train=0 (all   x1                as theirs [1]
                                      tokens), train=1: x1.5
                                      on tokens 0-1 only;
                                      rollouts x1 (L127-128,
                                      L367; M234, 283, 304)
 worker reward    r_t per token       one batch-mean cosine    r_t per token     batch mean of
                                      (L282-294)                                 r_t [2]
 manager loss     Q_t d_cos per goal  -mean(Q) x batch-mean    Q_t d_cos per     as theirs [3]
                                      cosine; pre-training:    goal
                                      -cosine / (T B / c)
                                      (L243-244, L270-271)
 reward rescale   sigma(delta (1/2 -  sigma(delta (i / B -     the paper's       as theirs [4]
                  rank / B))          1/2)) / rollouts, i in
                                      dict order (M110-131,
                                      M157-158)
 interleaved MLE  yes                 none (M278-319; their    every 4 batches;  none
                                      COCO script: every 15)   paper: 15
 MLE batches      not stated          the file in order: int(  a fresh order     as theirs
                                      N / B) full batches, the each epoch, all
                                      rest dropped, the same   rows, the last
                                      each epoch (dl19-27,     batch short
                                      M101-104)
 discriminator    not stated          shuffled once per round  a fresh order     as theirs [5]
 batches                              (new negatives), that    each epoch
                                      order each of its 3
                                      epochs, full batches
                                      (dl63-81, M237-241,
                                      M306-311)
 initial goal     not stated          the manager's, [B, F]:   the worker's, one as theirs [6]
                                      row i's first goal,      [F] (w_0 only)
                                      trained by the manager
                                      (L70-71, L182-183)

[1] ``eval_logit_scale`` multiplies the logits whenever the generator is not in training
    mode: the harness samples and scores (NLL-oracle, NLL-test, the sweep, ``generate``) in
    eval mode, so every evaluated sample is drawn at x1.5 as theirs were (M291: train=0) and
    NLL-test is the likelihood of that same distribution. Training picks its mode per call:
    the discriminator's negatives as train=0 (M234, M304), the policy-gradient samples as
    train=1 (M283), where ``scaled_first_tokens`` = 2 keeps x1.5 on tokens 0 and 1 (their
    ``i > 1`` condition), rollouts at x1 (L367). The losses read unscaled logits (L205).
[2] tf.losses.cosine_distance(labels, predictions, axis) with its default reduction
    (SUM_BY_NONZERO_WEIGHTS, weights 1.0) is sum(1 - sum(labels * predictions, axis)) over
    every other index, divided by their number: 1 - it is the mean cosine, one scalar. Their
    worker loss is -that scalar x the mean log-probability of the sampled tokens (L288-294).
    Ours takes the batch mean of the paper's r_t (this module's pairs of feature change and
    goal, see "Not reproduced"); the discriminator's rewards never reach the worker.
[3] Adversarial: -sum(Q * m) / (T B / c) with m the batch-mean cosine of (f_{t+c} - f_t,
    g_t) and Q [B, T/c], i.e. -mean(Q) m (L270-271; ours: the mean of the rescaled rewards
    [B, P], P = T/c where c divides T); pre-training: -m / (T B / c) (L243-244, a sum over
    a scalar), B the batch's rows. Only the goals' pairs are ours ("Not reproduced").
[4] Only the mean of the rescaled rewards reaches the manager under [3]. Their Python 2
    dict numbers a point's distinct values in hash order, ours by first appearance: without
    ties both give the values of 1..B once each, the same mean; a tie repeats the number
    the dict gave it, so with ties the means may differ slightly.
[5] ``disc_shuffle`` "round": real and fake rows shuffled together once a round from the
    ``disc_real_and_shuffle`` stream, cut to int(2N / batch) full batches (at their sizes
    2 x 9,984 = 312 x 64: none dropped), the same batches in each of the round's epochs
    (their reset_pointer, M239, M309). Their MLE loader (Gen_Data_loader; ``shuffle``
    False) cuts batches the same way but never shuffles: the training split's rows in file
    order; the ``leakgan_mle_shuffle`` stream is still made and checkpointed, never drawn
    from, so no other stream moves and a resumed run is the run.
[6] ``initial_goal`` "manager": their goal_init, tf.truncated_normal([B, F], 0.1) (N(0, 0.1)
    redrawn beyond 2 sd; L70), is in manager_params (L71), so only the manager's losses
    train it (L249-250, L276-279) and the worker reads it as a constant (L267, L298 take
    worker_params). It is the first block's goal: at i = 0 their manager's own sub_goal is
    discarded (L193-194) and goal_init is the real_goal the worker reads (L116, L198, x
    g_change: ours psi, then normalised), the goal the goal loss pairs with f_c - f_0
    (L182-183, L207-209, L243, L270) and the worker's cosine with its block (L195). Ours:
    it replaces g_0, the manager's goal at the empty prefix, as a unit vector (each of
    their uses normalises it: the same function of it), so it gives w_0 and enters the
    windows of w_1..w_c, the manager's loss with f_c - f_0 and the worker's rewards. Their
    batches always have B rows (L18, L45); ours, in any call (a sample of n rows, a batch
    teacher-forced or rolled out), row i takes goal i mod B (``batch_size``): the
    adversarial batch and its rollouts (row j completing sequence j mod B) pair each
    sequence with its own goal as theirs.

Also the authors' profile values (M, D): Adam 5e-5 for the discriminator (D97); no L2 on it
(M62 sets 0.2 but M173 never passes it: D60's default 0.0); 9,984 negatives (M78: 156
batches of 64). Their exponential learning-rate decays (L31-36) reach no optimizer (L247,
265, 274, 297 take the constant rate): there is no decay to reproduce.

Not reproduced (architecture, the same in every profile):
- Goals: w_t sums the goals g_{t-c}..g_{t-1} (the paper's sliding window); their code holds
  one summed goal per block of c tokens, summing g_{jc-c}..g_{jc-1} when sampling (L114-137)
  but g_{jc-c+1}..g_{jc} when teacher-forcing and in rollouts (L193-227, L328-339): their
  losses score sequences under other goals than they were sampled with. Their worker's
  cosine pairs f_{t+1} - f_{start of t's block} with the block's goal (L212-214, L195).
- Leaked features: their discriminator embeds the padding of a prefix (-1, looked up at
  row 0 of a vocab + 1 table: D110-114) as a learned vector; ours as zeros.
- Their discriminator's positives are 9,984 fresh oracle samples per round (M235, M305);
  ours, rows of the training split.

The model. The discriminator (SeqGAN's CNN, ``adversarial.Discriminator``) maps a prefix
s_t to its feature vector f_t (pooled convolutions through the highway layer; the prefix's
missing tokens embed as zeros). The generator has two LSTMs:

- the MANAGER reads f_t and emits a unit goal g_t in feature space;
- the WORKER reads the previous token and emits a matrix O_t [vocab, k]; the goals of the
  last c steps, summed and projected by psi (no bias) and normalised, give w_t in R^k, and
  the next token's logits are O_t w_t.

Training, as the paper describes it: the manager ascends Q_t * d_cos(f_{t+c} - f_t, g_t),
the rollout reward Q weighting how well g_t predicted where the features went over the
next c tokens; the worker does REINFORCE with the intrinsic reward
r_t = 1/c sum_i d_cos(f_t - f_{t-i}, g_{t-i}) (how far its token moved the features along
the goals). Rewards are rescaled by rank within the batch, sigma(delta (1/2 - rank / B))
(the paper's "bootstrapped rescaled activation"), and MLE epochs are interleaved with the
adversarial batches (the paper's "interleaved training").

Other choices, in every profile:
- w_0 reads a learned initial goal, as theirs (the worker's or, as theirs, the manager's:
  ``initial_goal``, [6]).
- Rollouts start from prefixes of length c, 2c, ... and the sequence itself is scored
  at T, as the authors' ``get_reward`` does (about c times fewer than SeqGAN's rollouts);
  the manager's g_t is weighted by the reward at the first such point >= t + c.
- The worker's loss never updates the manager and the manager's never updates the
  worker, as the authors' separate gradient lists; neither ever updates the
  discriminator, whose features are a constant input.
- The first author called the x1.5 "a trick in the early version" (geek-ai/Texygen issue
  19); the default and paper profiles leave it out.
- Pre-training as the authors' synthetic-data script: cycles of discriminator rounds then
  MLE epochs (worker: cross-entropy; manager: the cosine objective on real data with
  Q = 1). It trains its own generator: the shared LSTM's MLE run cannot serve.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness import Method, hookimpl
from harness.api import Corpus, RunContext, check_finite
from harness.config import require
from harness.devices import rows_per_step
from harness.generator import State, TeacherForced, sample_from_logits
from harness.training import epoch_order, train_step
from harness_plugins import adversarial as adv

PRETRAIN, ADVERSARIAL = "pretrain", "adversarial"

# What a run's rows were made under (``LeakGan.conditions``), in the words a published
# figure's ``conditions`` column names them. LOGITS_UNSCALED is the harness's own
# evaluation (harness.table.EVALUATION["logits"]).
ALGORITHM_PAPER = "the paper's formulas"
ALGORITHM_AUTHORS = "the authors' code (batch-mean cosine losses, no interleaved MLE)"
LOGITS_UNSCALED = "unscaled"
LOGITS_AUTHORS = "scaled by 1.5 (the authors' train=0 path)"


@hookimpl
def register_methods(register):
    register(LeakGan())


@hookimpl
def register_generators(register):
    register(LeakGanGenerator)


@dataclass
class LeakGanConfig:
    emb_dim: int = 32                 # worker embedding (authors: 32 at length 20, 64 at 40)
    hidden_dim: int = 32              # manager and worker LSTM units (authors: as emb_dim)
    goal_size: int = 4                # k: columns of O_t, size of w_t (authors' GOAL_SIZE:
                                      # 16); the output layer costs vocab x k x hidden per
                                      # token, 16x the shared LSTM's at k = 16: too slow here
    step_size: int = 4                # c: the goals' horizon in tokens (paper: 4)
    batch_size: int = 64              # generator batch, MLE and adversarial (authors: 64)
    lr: float = 0.005                 # generator Adam, both phases (authors: 0.0015 at
                                      # length 20 over 80 epochs; larger for short CPU runs)
    grad_clip: float = 5.0            # gradient-norm clip, manager and worker each (authors)
    pretrain_cycles: int = 1          # pre-training cycles of discriminator rounds then MLE
                                      # epochs (authors: 10)
    pretrain_epochs: int = 1          # MLE epochs per cycle (authors: 8, 80 in all)
    disc_pretrain_rounds: int = 1     # discriminator rounds per cycle (authors: 5)
    disc_size: str = "small"          # "small" (CPU) or "paper" (the authors' 1,720 filters)
    disc_dropout: float = 0.0         # drop probability in the discriminator (the authors'
                                      # LeakGAN keeps all: 0; SeqGAN drops 0.25)
    disc_lr: float = 1e-4             # discriminator Adam (SeqGAN's authors; LeakGAN's:
                                      # 5e-5, Discriminator.py line 97)
    disc_l2: float = 0.2              # L2 on the discriminator's output layer (SeqGAN's
                                      # authors; LeakGAN's Main.py line 62 sets 0.2 but
                                      # never passes it on: 0)
    disc_batch_size: int = 64
    disc_negatives: int = 2000        # generated sequences per discriminator round
                                      # (authors: 10,000)
    disc_epochs: int = 1              # epochs per discriminator round (authors: 3)
    adv_batches: int = 4              # adversarial batches (authors: 800)
    g_steps: int = 1                  # generator updates per adversarial batch (authors: 1)
    d_steps: int = 1                  # discriminator rounds per adversarial batch (authors: 5)
    n_rollouts: int = 4               # Monte-Carlo completions per prefix (authors: 4)
    rescale_delta: float = 16.0       # delta of the rank rescaling (authors' redistribution)
    mle_every: int = 4                # an interleaved MLE epoch every this many adversarial
                                      # batches, from the first; 0: none (authors' Image
                                      # COCO Main.py: 15)
    adv_eval_every: int = 2           # adversarial batches between curve points (authors: 5;
                                      # each point samples 10,000 sequences)
    # The authors' code where it departs from the paper's text (the ``authors`` profile;
    # CR-Gjx/LeakGAN @4044de6, Synthetic Data/; the module docstring's table).
    eval_logit_scale: float = 1.0     # factor on the logits whenever the generator is not in
                                      # training mode: evaluation samples and likelihoods,
                                      # the discriminator's negatives (authors: 1.5, their
                                      # train=0; LeakGANModel.py lines 127-128)
    scaled_first_tokens: int = 0      # tokens at the start of the policy-gradient samples
                                      # still drawn at x eval_logit_scale (authors: 2, their
                                      # ``i > 1`` condition on the same lines)
    goal_loss: str = "paper"          # "paper": -Q_t d_cos per goal; "authors": -mean(Q)
                                      # x the batch-mean cosine (LeakGANModel.py lines
                                      # 243-244, 270-271)
    worker_reward: str = "paper"      # "paper": r_t per token; "authors": one batch mean
                                      # (LeakGANModel.py lines 288-294)
    reward_rescale: str = "paper"     # "paper": sigma(delta (1/2 - rank / B)); "authors":
                                      # theirs, / n_rollouts (Main.py lines 110-131, 157-158)
    shuffle: bool = True              # MLE epochs (pre-training, interleaved) in a fresh order,
                                      # every row; False: the training rows in file order,
                                      # int(rows / batch_size) full batches, the rest dropped,
                                      # the same each epoch (authors: their Gen_Data_loader,
                                      # dataloader.py lines 19-27, its pointer reset each epoch
                                      # by Main.py line 101)
    disc_shuffle: str = "epoch"       # the discriminator's mixed real and fake rows: "epoch",
                                      # a fresh order each epoch; "round": one order a round,
                                      # full batches, for all its epochs (authors: their
                                      # Dis_dataloader, dataloader.py lines 63-81, its pointer
                                      # reset each epoch by Main.py lines 239, 309)
    initial_goal: str = "worker"      # the learned goal w_0 reads: "worker", one [F] vector
                                      # trained by the worker's loss; "manager": [batch_size,
                                      # F], truncated N(0, 0.1), the manager's, standing for
                                      # g_0 (row i takes goal i mod batch_size; authors:
                                      # goal_init, LeakGANModel.py lines 70-71; the module's [6])

    def __post_init__(self):
        variants = ("paper", "authors")
        require(self, positive=("grad_clip", "rescale_delta", "eval_logit_scale"),
                fractions=("disc_dropout",),
                choices={"disc_size": ("small", "paper"), "goal_loss": variants,
                         "worker_reward": variants, "reward_rescale": variants,
                         "disc_shuffle": adv.DISC_SHUFFLES,
                         "initial_goal": ("worker", "manager")},
                at_least_one=("emb_dim", "hidden_dim", "goal_size", "step_size", "batch_size",
                              "disc_batch_size", "disc_negatives", "g_steps", "n_rollouts",
                              "adv_eval_every"))


# The authors' synthetic-data script (CR-Gjx/LeakGAN, Synthetic Data/Main.py) at length
# 20: 10 cycles of 5 discriminator rounds (3 epochs on 10,000 fresh negatives) and 8 MLE
# epochs, LEARNING_RATE 0.0015, TOTAL_BATCH 800 with 5 x 3 discriminator epochs each,
# rollout_num 4, dropout keep 1.0; the interleaved MLE epoch every 15 batches is from
# their Image COCO Main.py (the paper's "interleaved training").
PAPER = {"goal_size": 16, "lr": 0.0015, "adv_eval_every": 5, "pretrain_cycles": 10,
         "pretrain_epochs": 8, "disc_pretrain_rounds": 5, "disc_size": "paper",
         "disc_negatives": 10_000, "disc_epochs": 3, "adv_batches": 800, "d_steps": 5,
         "n_rollouts": 4, "mle_every": 15}

# Their synthetic-data code itself (CR-Gjx/LeakGAN @4044de6, Synthetic Data/; the x1.5
# version, not No Temperature/ of dc3360e), Main.py at length 20 unless said: EMB_DIM,
# HIDDEN_DIM 32 (lines 46-47), BATCH_SIZE 64 (30), GOAL_SIZE 16 (32), step_size 4 (176),
# LEARNING_RATE 0.0015 (45), grad_clip 5.0 (LeakGANModel.py 23); 10 cycles (232) of 5
# discriminator rounds (233) and PRE_EPOCH_NUM / 10 = 8 MLE epochs (258); the discriminator
# of lines 43-44 with keep probability 1.0 (61), batches of 64 (172), Adam 5e-5
# (Discriminator.py 97), no L2 (173: dis_l2_reg_lambda never passed), 3 epochs (238) on
# int(10,000 / 64) x 64 = 9,984 negatives (72, 78); TOTAL_BATCH 800 (68) of 1 generator
# update (273) and 5 discriminator rounds (303), 4 rollouts (284), the rescale's 16 (111),
# no interleaved MLE (278-319), a curve point every 5 batches (290); their loaders: MLE on
# the file in order (dataloader.py 19-27, Main.py 101), the discriminator's rows shuffled
# once a round (dataloader.py 63-81, Main.py 239, 309); the manager's initial goal
# [BATCH_SIZE, F] (LeakGANModel.py 70-71); and the variants above.
AUTHORS = {"emb_dim": 32, "hidden_dim": 32, "batch_size": 64, "goal_size": 16,
           "step_size": 4, "lr": 0.0015, "grad_clip": 5.0, "pretrain_cycles": 10,
           "pretrain_epochs": 8, "disc_pretrain_rounds": 5, "disc_size": "paper",
           "disc_dropout": 0.0, "disc_batch_size": 64, "disc_lr": 5e-5, "disc_l2": 0.0,
           "disc_epochs": 3, "disc_negatives": 9_984, "adv_batches": 800, "g_steps": 1,
           "d_steps": 5, "n_rollouts": 4, "rescale_delta": 16.0, "mle_every": 0,
           "adv_eval_every": 5, "eval_logit_scale": 1.5, "scaled_first_tokens": 2,
           "goal_loss": "authors", "worker_reward": "authors", "reward_rescale": "authors",
           "shuffle": False, "disc_shuffle": "round", "initial_goal": "manager"}


# --- the leaked features ----------------------------------------------------------------
#
# f_t is the discriminator's feature vector (pooled convolutions through its highway layer,
# what its output layer reads) of the prefix y_<t, the missing tokens embedded as zeros (the
# authors pad with -1 and look up row 0 of a table one row longer than the vocabulary: a
# learned padding vector; see the module's "Not reproduced"). A convolution of window k at
# position p then sums its taps j over the present tokens only: sum_{j < min(k, t - p)}
# W_j e(y_{p+j}). Computed from these per-tap partial sums, every prefix costs one pass
# over the sequence, not one convolution of the whole sequence per prefix (the 2-core
# CPU spent 4/5 of sampling in conv1d that way).

def _taps(embedded: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """W_j e(y_s) for every position s and tap j: [B, T, k, filters]."""
    return torch.einsum("bte,fek->btkf", embedded, conv.weight)


def _pool(disc: adv.Discriminator, window_values: list[torch.Tensor]) -> torch.Tensor:
    """Features from each window's conv values [..., positions, filters]: max over
    positions, bias, ReLU, highway (the discriminator's own order)."""
    pooled = [F.relu(values.amax(dim=-2) + conv.bias)
              for values, conv in zip(window_values, disc.convs)]
    return disc.highway(torch.cat(pooled, dim=-1))


def all_prefix_features(disc: adv.Discriminator, tokens: torch.Tensor) -> torch.Tensor:
    """f_0..f_T [B, T+1, F] for every prefix of ``tokens`` [B, T]."""
    length = tokens.shape[1]
    embedded = disc.embedding(tokens)
    prefix = torch.arange(length + 1, device=tokens.device)
    values = []
    for conv in disc.convs:
        k = conv.kernel_size[0]
        positions = length - k + 1
        taps = _taps(embedded, conv)
        # partial[:, p, m] = sum_{j < m} W_j e(y_{p+j}), m = 0..k
        window = torch.stack([taps[:, j:j + positions, j] for j in range(k)], dim=2)
        partial = F.pad(window.cumsum(dim=2), (0, 0, 1, 0))
        if positions <= k + 1:
            present = (prefix[:, None] - torch.arange(positions, device=tokens.device)).clamp(0, k)
            values.append(partial[:, torch.arange(positions, device=tokens.device), present])
        else:
            values.append(_prefix_candidates(partial, length))
    return _pool(disc, values)  # values: [B, T+1, candidates, filters]


def _prefix_candidates(partial: torch.Tensor, length: int) -> torch.Tensor:
    """For each prefix t = 0..T, k + 1 values [B, T+1, k+1, F] whose max is the max over
    all window positions of ``partial`` [B, positions, k+1, F] (taps present: min(k, t - p)):
    the running max of the complete windows, the k - 1 windows the prefix ends inside, and
    a zero for the windows not reached yet. Max is exact, so the pooled features are the
    very floats of the max over every position, at O(T k) instead of O(T^2)."""
    rows, positions, k_plus_1, filters = partial.shape
    k = k_plus_1 - 1
    complete = partial[:, :, k].cummax(dim=1).values
    missing = partial.new_full((rows, 1, filters), -torch.inf)
    pool = torch.cat([partial.flatten(1, 2), complete, missing], dim=1)
    first_complete, none = positions * k_plus_1, positions * (k_plus_1 + 1)
    index = []
    for t in range(length + 1):
        row = [first_complete + t - k if t >= k else none]  # windows p <= t - k
        for taps in range(1, k):  # the window at p = t - taps holds taps tokens
            p = t - taps
            row.append(p * k_plus_1 + taps if 0 <= p < positions else none)
        row.append(t * k_plus_1 if t < positions else none)  # partial[:, t, 0] is 0
        index.append(row)
    return pool[:, torch.tensor(index, device=partial.device)]


class GrowingPrefixFeatures:
    """f_t of a prefix that grows one token at a time, for sampling: each window position's
    partial sum gains the new token's tap."""

    def __init__(self, disc: adv.Discriminator, rows: int, length: int):
        self.disc, self.length = disc, length
        self.partial = [torch.zeros(rows, length - conv.kernel_size[0] + 1, conv.out_channels,
                                    device=conv.weight.device) for conv in disc.convs]
        # the max over the complete windows: pooling then reads at most k + 1 positions
        self.complete_max = [torch.full((rows, 1, conv.out_channels), -torch.inf,
                                        device=conv.weight.device) for conv in disc.convs]
        self.size = 0  # tokens read so far

    def features(self) -> torch.Tensor:
        """The max over every position, exactly: the complete windows' running max, then
        the windows the prefix ends inside and the first not reached (all zero after it)."""
        candidates = []
        for partial, best, conv in zip(self.partial, self.complete_max, self.disc.convs):
            first = max(0, self.size - conv.kernel_size[0] + 1)
            candidates.append(torch.cat([best, partial[:, first:self.size + 1]], dim=1))
        return _pool(self.disc, candidates)

    def read(self, token: torch.Tensor) -> None:
        """Append ``token`` [B] at position ``size``."""
        t = self.size
        embedded = self.disc.embedding(token)
        for partial, best, conv in zip(self.partial, self.complete_max, self.disc.convs):
            k = conv.kernel_size[0]
            first, last = max(0, t - k + 1), min(t, partial.shape[1] - 1)
            if first <= last:  # windows starting at p see the token through tap t - p
                taps = _taps(embedded[:, None], conv)[:, 0]
                # starts first..last take taps t - first down to t - last: a slice, in place
                partial[:, first:last + 1] += taps[:, t - last:t - first + 1].flip(1)
            if t - k + 1 == first <= last:  # the window at ``first`` is now complete
                torch.maximum(best, partial[:, first:first + 1], out=best)
        self.size += 1


class LeakGanGenerator(TeacherForced):
    """Manager and worker LSTMs with the discriminator whose features they read.

    The discriminator is a submodule so that a saved generator can still sample; only
    ``discriminator_round`` trains it, the generator's losses never do.
    """

    def __init__(self, vocab_size: int, seq_len: int, start_token: int = 0, emb_dim: int = 32,
                 hidden_dim: int = 32, goal_size: int = 16, step_size: int = 4,
                 disc_emb_dim: int = adv.SMALL["emb_dim"],
                 filter_sizes: tuple[int, ...] | list[int] = adv.SMALL["filter_sizes"],
                 num_filters: tuple[int, ...] | list[int] = adv.SMALL["num_filters"],
                 disc_dropout: float = 0.0, init_std: float | None = 0.1,
                 eval_logit_scale: float = 1.0, scaled_first_tokens: int = 0,
                 initial_goal: str = "worker", batch_size: int = 64):
        super().__init__()
        if initial_goal not in ("worker", "manager"):
            raise ValueError(f"initial_goal must be worker or manager, not {initial_goal!r}")
        self.constructor_args = dict(
            vocab_size=vocab_size, seq_len=seq_len, start_token=start_token, emb_dim=emb_dim,
            hidden_dim=hidden_dim, goal_size=goal_size, step_size=step_size,
            disc_emb_dim=disc_emb_dim, filter_sizes=list(filter_sizes),
            num_filters=list(num_filters), disc_dropout=disc_dropout,
            init_std=None,  # the state dict sets every weight
            eval_logit_scale=eval_logit_scale, scaled_first_tokens=scaled_first_tokens,
            initial_goal=initial_goal, batch_size=batch_size)
        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.goal_size, self.step_size = goal_size, step_size
        # Saved with the weights: a loaded generator samples as the trained one did.
        self.eval_logit_scale, self.scaled_first_tokens = eval_logit_scale, scaled_first_tokens
        self.discriminator = adv.Discriminator(vocab_size, seq_len, disc_emb_dim,
                                               tuple(filter_sizes), tuple(num_filters),
                                               disc_dropout)
        features = sum(self.discriminator.num_filters)
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.worker = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.worker_output = nn.Linear(hidden_dim, vocab_size * goal_size)  # O_t, flattened
        self.goal_projection = nn.Linear(features, goal_size, bias=False)  # psi
        # "worker": w_0's goal, no goal emitted yet, one for every row; "manager": the
        # authors' goal_init, one per batch row (row i of any call takes i mod batch_size),
        # standing for g_0 (the module's [6])
        self.initial_goal = initial_goal
        rows = (batch_size,) if initial_goal == "manager" else ()
        self.goal_init = nn.Parameter(torch.zeros(*rows, features))
        self.manager = nn.LSTM(features, hidden_dim, batch_first=True)
        self.manager_output = nn.Linear(hidden_dim, features)
        if init_std is not None:  # the authors draw every generator weight from N(0, 0.1)
            for p in [*self.worker_parameters(), *self.manager_parameters()]:
                if p is self.goal_init and initial_goal == "manager":
                    # tf.truncated_normal (LeakGANModel.py line 70): redrawn beyond 2 sd
                    nn.init.trunc_normal_(p, 0.0, init_std, -2 * init_std, 2 * init_std)
                else:
                    nn.init.normal_(p, 0.0, init_std)

    def worker_parameters(self) -> list[nn.Parameter]:
        own_goal = [self.goal_init] if self.initial_goal == "worker" else []
        return [*self.embedding.parameters(), *self.worker.parameters(),
                *self.worker_output.parameters(), *self.goal_projection.parameters(),
                *own_goal]

    def manager_parameters(self) -> list[nn.Parameter]:
        # the authors' goal_init is in their manager_params, after its units (line 71)
        own_goal = [self.goal_init] if self.initial_goal == "manager" else []
        return [*self.manager.parameters(), *self.manager_output.parameters(), *own_goal]

    # --- the pieces of one step ---------------------------------------------------------

    @torch.no_grad()
    def prefix_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """f_0..f_T [B, T+1, F]: the leaked features of every prefix y_<t, t = 0..T."""
        return all_prefix_features(self.discriminator, tokens)

    def goals(self, features: torch.Tensor, state: State | None = None
              ) -> tuple[torch.Tensor, State]:
        """Unit goals g_t [B, steps, F] of the manager reading features [B, steps, F]."""
        hidden, state = self.manager(features, state)
        return F.normalize(self.manager_output(hidden), dim=-1), state

    def initial_goals(self, rows: int, first_row: int = 0) -> torch.Tensor:
        """Under ``initial_goal`` "manager", g_0 of rows first_row.. first_row + rows - 1
        [rows, 1, F]: row i takes the unit vector of goal_init[i mod batch_size] (the
        authors' batches always have batch_size rows, row i its own goal_init row)."""
        index = torch.arange(first_row, first_row + rows, device=self.goal_init.device)
        return F.normalize(self.goal_init[index % len(self.goal_init)], dim=-1).unsqueeze(1)

    def with_initial_goal(self, goals: torch.Tensor, first_row: int = 0) -> torch.Tensor:
        """The goals g_0.. [B, steps, F], g_0 the learned initial goal under "manager" (the
        authors' i = 0 step discards the manager's own, LeakGANModel.py lines 193-194);
        unchanged under "worker"."""
        if self.initial_goal != "manager":
            return goals
        return torch.cat([self.initial_goals(len(goals), first_row), goals[:, 1:]], dim=1)

    def goal_directions(self, goals: torch.Tensor) -> torch.Tensor:
        """w_t = normalise(psi(g_{t-c} + ... + g_{t-1})) [B, T, k] for goals g_0..g_{T-1}
        (goals before g_0 count as zero; w_0 reads the learned initial goal: "worker", its
        own; "manager", g_0 itself, which is that goal)."""
        c = self.step_size
        windows = F.pad(goals[:, :-1], (0, 0, c - 1, 0)).unfold(1, c, 1)  # [B, T-1, F, c]
        first = (goals[:, :1] if self.initial_goal == "manager"
                 else self.goal_init.expand(len(goals), 1, -1))
        sums = torch.cat([first, windows.sum(dim=3)], dim=1)
        return F.normalize(self.goal_projection(sums), dim=-1)

    def worker_matrix(self, hidden: torch.Tensor) -> torch.Tensor:
        """O_t [..., vocab, k] from worker states [..., H]."""
        return self.worker_output(hidden).unflatten(-1, (self.vocab_size, self.goal_size))

    def logits(self, hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """O_t w_t [..., vocab] without building O_t: sum_k w_k (W_k h + b_k) is one product
        with the outer product w (x) h, a [vocab, k * H] matrix (O_t itself is vocab x k
        floats per row and step: 400 MB for a batch of the oracle)."""
        weight = self.worker_output.weight.view(self.vocab_size, -1)  # rows (v), columns (k, h)
        bias = self.worker_output.bias.view(self.vocab_size, self.goal_size)
        outer = (direction.unsqueeze(-1) * hidden.unsqueeze(-2)).flatten(-2)
        # in place: the same sum without a third [rows, vocab] buffer (mm's backward does
        # not read its output)
        return (outer @ weight.T).add_(direction @ bias.T)

    # --- teacher forcing ----------------------------------------------------------------

    def teacher_forced(self, tokens: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [B, T, V], goals g_0..g_{T-1} [B, T, F], features f_0..f_T [B, T+1, F]).

        The logits read the goals detached: the worker's losses do not train the manager.
        """
        features = self.prefix_features(tokens)
        goals = self.with_initial_goal(self.goals(features[:, :-1])[0])
        hidden, _ = self.worker(self.embedding(self.shifted_inputs(tokens)))
        return self.logits(hidden, self.goal_directions(goals.detach())), goals, features

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """The logits sampling in the current mode draws from (``logit_scales``): in eval
        mode every likelihood (NLL-test, the sweep) is that of the evaluated samples'
        distribution. The losses read ``teacher_forced``'s, unscaled, as the authors' do."""
        logits = self.teacher_forced(tokens)[0]
        scales = self.logit_scales(self.training)
        if all(scale == 1.0 for scale in scales):
            return logits
        return logits * torch.tensor(scales, device=logits.device).unsqueeze(-1)

    # --- sampling -----------------------------------------------------------------------

    def logit_scales(self, training: bool) -> list[float]:
        """The factor on each step's logits when sampling [T]. Outside training (the
        authors' train=0) ``eval_logit_scale`` at every step; in training (their train=1)
        on the first ``scaled_first_tokens`` steps only, 1 after."""
        scaled = min(self.scaled_first_tokens, self.seq_len) if training else self.seq_len
        return [self.eval_logit_scale] * scaled + [1.0] * (self.seq_len - scaled)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               chunk: int | None = None, scales: list[float] | None = None) -> torch.Tensor:
        """``n`` sequences; ``scales``: the factor on each step's logits (default: this
        mode's ``logit_scales``)."""
        blank = torch.zeros(n, self.seq_len, dtype=torch.long, device=self.device)
        chunk = chunk or rows_per_step(self.device, 256)
        return torch.cat([self.complete(rows, torch.zeros(len(rows), dtype=torch.long,
                                                          device=self.device),
                                        temperature, generator, scales=scales,
                                        first_row=start)
                          for start, rows in zip(range(0, n, chunk), blank.split(chunk))]
                         ) if n else blank

    @torch.no_grad()
    def complete(self, tokens: torch.Tensor, given: torch.Tensor, temperature: float = 1.0,
                 generator: torch.Generator | None = None, return_log_probs: bool = False,
                 scales: list[float] | None = None, first_row: int = 0):
        """``tokens`` [B, T] with row b's first ``given[b]`` tokens kept, the rest sampled,
        step by step: at step t the manager reads the features of y_<t, and the logits are
        multiplied by ``scales[t]`` (default: this mode's ``logit_scales``). With
        ``return_log_probs``, also the log-probability of each sampled token (0 where kept).
        ``first_row``: the rows' place in the whole sample, for a per-row initial goal."""
        scales = self.logit_scales(self.training) if scales is None else scales
        tokens = tokens.clone()
        log_probs = torch.zeros(tokens.shape, device=tokens.device)
        n = len(tokens)
        worker_state = manager_state = None
        recent: list[torch.Tensor] = []  # the goals of the last c steps
        previous = tokens.new_full((n, 1), self.start_token)
        leak = GrowingPrefixFeatures(self.discriminator, n, self.seq_len)
        for t in range(self.seq_len):
            features = leak.features()
            goal, manager_state = self.goals(features.unsqueeze(1), manager_state)
            if t == 0:
                goal = self.with_initial_goal(goal, first_row)
            summed = (torch.stack(recent, dim=2).sum(dim=2) if recent
                      else goal if self.initial_goal == "manager"
                      else self.goal_init.expand(n, 1, -1))
            direction = F.normalize(self.goal_projection(summed), dim=-1)
            hidden, worker_state = self.worker(self.embedding(previous), worker_state)
            free = given <= t
            if bool(free.any()):
                logits = self.logits(hidden[free, 0], direction[free, 0])
                if scales[t] != 1.0:
                    logits = logits * scales[t]
                tokens[free, t], log_probs[free, t] = sample_from_logits(logits, temperature,
                                                                         generator)
            recent = [*recent, goal][-self.step_size:]
            previous = tokens[:, t:t + 1]
            leak.read(tokens[:, t])
        return (tokens, log_probs) if return_log_probs else tokens


def new_generator(corpus: Corpus, cfg: LeakGanConfig, device: torch.device) -> LeakGanGenerator:
    sizes = adv.PAPER if cfg.disc_size == "paper" else adv.SMALL
    return LeakGanGenerator(corpus.vocab_size, corpus.seq_len, corpus.start_token, cfg.emb_dim,
                            cfg.hidden_dim, cfg.goal_size, cfg.step_size, sizes["emb_dim"],
                            sizes["filter_sizes"], sizes["num_filters"], cfg.disc_dropout,
                            eval_logit_scale=cfg.eval_logit_scale,
                            scaled_first_tokens=cfg.scaled_first_tokens,
                            initial_goal=cfg.initial_goal, batch_size=cfg.batch_size).to(device)


# --- the objectives -----------------------------------------------------------------------

Cosine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def paper_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d_cos along the last axis, torch's (the paper's formulas)."""
    return F.cosine_similarity(a, b, dim=-1)


def tf_unit(x: torch.Tensor) -> torch.Tensor:
    """tf.nn.l2_normalize along the last axis: x / sqrt(max(sum x^2, 1e-12))."""
    return x * x.square().sum(dim=-1, keepdim=True).clamp_min(1e-12).rsqrt()


def tf_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The authors' cosine: their TF-normalised vectors' products summed over the last axis
    (the 1 - x inside tf.losses.cosine_distance, before its reduction)."""
    return (tf_unit(a) * tf_unit(b)).sum(dim=-1)


def goal_cosines(goals: torch.Tensor, features: torch.Tensor, step_size: int,
                 cosine: Cosine = paper_cosine) -> torch.Tensor:
    """d_cos(f_{t+c} - f_t, g_t) [B, T-c+1] for t = 0..T-c: how well each goal foretold
    where the features went over the next c tokens."""
    span = goals.shape[1] - step_size + 1
    return cosine(features[:, step_size:] - features[:, :span], goals[:, :span])


def manager_loss(goals: torch.Tensor, features: torch.Tensor, step_size: int,
                 rewards: torch.Tensor | None = None) -> torch.Tensor:
    """-mean_t Q_t d_cos(f_{t+c} - f_t, g_t) over t = 0..T-c (``rewards`` Q [B, T-c+1];
    None: Q = 1, the pre-training objective)."""
    similarity = goal_cosines(goals, features, step_size)
    return -(similarity if rewards is None else similarity * rewards).mean()


def authors_manager_loss(goals: torch.Tensor, features: torch.Tensor, step_size: int,
                         rewards: torch.Tensor | None = None) -> torch.Tensor:
    """The authors' goal loss (LeakGANModel.py lines 243-244, 270-271). m: the mean cosine
    over the batch and the goals, one scalar (tf.losses.cosine_distance's default reduction).
    Adversarial (``rewards`` [B, P]): their -sum(Q * m) / (T B / c) over Q [B, T/c], i.e.
    -mean(Q) m; each goal's own reward counts no more than any other's. Pre-training (None):
    their -sum(m) / (T B / c), a sum over a scalar, B the batch's rows."""
    mean_cosine = goal_cosines(goals, features, step_size, tf_cosine).mean()
    if rewards is None:
        rows, length = goals.shape[:2]
        return -mean_cosine / (length * rows // step_size)
    return -rewards.mean() * mean_cosine


def goal_objective(goals: torch.Tensor, features: torch.Tensor, step_size: int, variant: str,
                   rewards: torch.Tensor | None = None) -> torch.Tensor:
    """The manager's loss, ``variant`` "paper" (per goal, weighted by its Q_t) or "authors"
    (``authors_manager_loss``); ``rewards`` [B, P] the rescaled rewards, None in pre-training."""
    if variant == "authors":
        return authors_manager_loss(goals, features, step_size, rewards)
    weights = None if rewards is None else manager_weights(rewards, goals.shape[1], step_size)
    return manager_loss(goals, features, step_size, weights)


@torch.no_grad()
def intrinsic_rewards(goals: torch.Tensor, features: torch.Tensor, step_size: int,
                      cosine: Cosine = paper_cosine) -> torch.Tensor:
    """The worker's reward for token t [B, T]: the mean over i = 1..c (those with a goal) of
    d_cos(f_{t+1} - f_{t+1-i}, g_{t+1-i}), f_{t+1} being the features after the token."""
    n, length, _ = goals.shape
    total = goals.new_zeros(n, length)
    count = goals.new_zeros(length)
    for i in range(1, min(step_size, length) + 1):
        span = length + 1 - i  # goals g_0..g_{T-i} reach f_i..f_T
        total[:, i - 1:] += cosine(features[:, i:] - features[:, :span], goals[:, :span])
        count[i - 1:] += 1
    return total / count


@torch.no_grad()
def worker_rewards(goals: torch.Tensor, features: torch.Tensor, step_size: int,
                   variant: str) -> torch.Tensor:
    """The reward that multiplies the log-probability of each token: "paper", r_t [B, T];
    "authors", one scalar, the batch mean of r_t (their Worker_Reward, LeakGANModel.py lines
    288-294: a cosine under tf.losses.cosine_distance's default reduction)."""
    if variant == "authors":
        return intrinsic_rewards(goals, features, step_size, tf_cosine).mean()
    return intrinsic_rewards(goals, features, step_size)


def rescale_by_rank(rewards: torch.Tensor, delta: float) -> torch.Tensor:
    """sigma(delta (1/2 - rank / B)) per column of ``rewards`` [B, K], rank 1 the highest
    (the paper's bootstrapped rescaled activation; ties ranked by position)."""
    n = rewards.shape[0]
    order = rewards.argsort(dim=0, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(
        0, order, torch.arange(1, n + 1, device=rewards.device).unsqueeze(1).expand_as(order))
    return torch.sigmoid(delta * (0.5 - ranks.to(rewards.dtype) / n))


def rescale_like_authors(rewards: torch.Tensor, delta: float, n_rollouts: int) -> torch.Tensor:
    """The authors' ``rescale`` and ``/ rollout_num`` (Main.py lines 110-131, 157-158), per
    column of ``rewards`` [B, K]: the column's distinct values numbered i = 1, 2, ... in the
    order a dict keeps them, each becoming sigma(delta (i / B - 1/2)) / n_rollouts. Their
    Python 2 dict kept floats in hash order, not by value; this numbers them by first
    appearance. Under their batch-mean goal loss only the mean counts: without ties that
    of 1..B, in either order; a tie repeats whichever number the dict gave it."""
    rows = rewards.shape[0]
    out = torch.empty_like(rewards)
    for column in range(rewards.shape[1]):
        values = rewards[:, column].tolist()
        number: dict[float, int] = {}
        for value in values:
            number.setdefault(value, len(number) + 1)
        i = torch.tensor([number[value] for value in values], dtype=rewards.dtype,
                         device=rewards.device)
        out[:, column] = torch.sigmoid(delta * (i / rows - 0.5)) / n_rollouts
    return out


def rescale(raw: torch.Tensor, cfg: LeakGanConfig) -> torch.Tensor:
    """The raw rewards [B, P] rescaled the paper's way or the authors' (``reward_rescale``)."""
    if cfg.reward_rescale == "authors":
        return rescale_like_authors(raw, cfg.rescale_delta, cfg.n_rollouts)
    return rescale_by_rank(raw, cfg.rescale_delta)


def reward_points(seq_len: int, step_size: int) -> list[int]:
    """Prefix lengths rolled out from (c, 2c, ... below T) and T, the sequence itself."""
    return [*range(step_size, seq_len, step_size), seq_len]


@torch.no_grad()
def rollout_rewards(generator: LeakGanGenerator, sequences: torch.Tensor, n_rollouts: int,
                    score: adv.Score, rng: torch.Generator | None = None) -> torch.Tensor:
    """Raw rewards [B, P]: at each of ``reward_points`` but the last, the mean score of
    ``n_rollouts`` completions of the prefix; at T, the score of the sequence. Completions
    draw from the unscaled logits in every mode (the authors' rollout, LeakGANModel.py
    line 367)."""
    n, length = sequences.shape
    starts = reward_points(length, generator.step_size)[:-1]
    given = torch.tensor(starts, device=sequences.device).repeat_interleave(n_rollouts * n)
    completed = generator.complete(sequences.repeat(len(starts) * n_rollouts, 1), given,
                                   generator=rng, scales=[1.0] * length)
    scores = score(torch.cat([completed, sequences])).float().to(sequences.device)
    rolled = scores[:len(completed)].view(len(starts), n_rollouts, n).mean(dim=1)
    return torch.cat([rolled.T, scores[len(completed):, None]], dim=1)


def manager_weights(rewards: torch.Tensor, seq_len: int, step_size: int) -> torch.Tensor:
    """Q_t [B, T-c+1] for goals g_0..g_{T-c}: the reward at the first point >= t + c."""
    points = torch.tensor(reward_points(seq_len, step_size), device=rewards.device)
    reached = torch.arange(step_size, seq_len + 1, device=rewards.device)
    return rewards[:, torch.searchsorted(points, reached)]


# --- training -----------------------------------------------------------------------------

def new_optimizer(generator: LeakGanGenerator, lr: float) -> torch.optim.Adam:
    """Adam over two groups, worker then manager, clipped apart as the authors do."""
    return torch.optim.Adam([{"params": generator.worker_parameters()},
                             {"params": generator.manager_parameters()}], lr=lr)


def update(optimizer: torch.optim.Optimizer, worker_loss: torch.Tensor,
           manager_loss_: torch.Tensor, grad_clip: float) -> tuple[float, float]:
    """One step on both losses; each reaches only its own group's parameters."""
    values = worker_loss.item(), manager_loss_.item()
    check_finite(values[0], "the worker loss")
    check_finite(values[1], "the manager loss")
    optimizer.zero_grad(set_to_none=True)
    (worker_loss + manager_loss_).backward()
    for group in optimizer.param_groups:
        torch.nn.utils.clip_grad_norm_(group["params"], grad_clip)
    optimizer.step()
    return values


def mle_batches(rows: int, batch_size: int, rng: torch.Generator, shuffle: bool = True
                ) -> list[torch.Tensor]:
    """The row indices of each batch of an MLE epoch over ``rows`` rows. Shuffled: a fresh
    permutation from ``rng``, every row, the last batch short. In order (the authors'
    Gen_Data_loader, dataloader.py lines 19-27, its pointer reset by Main.py line 101 at
    each epoch): int(rows / batch_size) full batches of the rows in file order, the rest
    dropped, the same every epoch (``harness.training.epoch_order``); ``rng`` is not drawn
    from."""
    return list(epoch_order(rows, batch_size, shuffle, rng).split(batch_size))


def mle_epoch(generator: LeakGanGenerator, data: torch.Tensor, optimizer: torch.optim.Optimizer,
              batch_size: int, grad_clip: float, rng: torch.Generator,
              goal_loss: str = "paper", shuffle: bool = True) -> tuple[float, float]:
    """A pass, shuffled or in file order (``mle_batches``): worker cross-entropy, manager
    cosine objective with Q = 1 (the ``goal_loss`` variant); the mean token NLL and manager
    loss over the rows it read."""
    generator.train()
    nll = goal = 0.0
    seen = 0
    for rows in mle_batches(len(data), batch_size, rng, shuffle):
        batch = data[rows].to(generator.device)
        logits, goals, features = generator.teacher_forced(batch)
        worker = F.cross_entropy(logits.flatten(0, 1), batch.flatten())
        manager = goal_objective(goals, features, generator.step_size, goal_loss)
        step_nll, step_goal = update(optimizer, worker, manager, grad_clip)
        nll += step_nll * len(batch)
        goal += step_goal * len(batch)
        seen += len(batch)
    return nll / seen, goal / seen


def adversarial_step(generator: LeakGanGenerator, optimizer: torch.optim.Optimizer,
                     sequences: torch.Tensor, rewards: torch.Tensor, grad_clip: float,
                     goal_loss: str = "paper", worker_reward: str = "paper"
                     ) -> tuple[float, float]:
    """Worker: REINFORCE with the intrinsic reward; manager: the cosine objective weighted
    by the rescaled rewards [B, P]; each the paper's or the authors' (``worker_rewards``,
    ``goal_objective``). The worker and manager losses."""
    generator.train()
    c = generator.step_size
    logits, goals, features = generator.teacher_forced(sequences)
    worker = worker_loss(logits, sequences, worker_rewards(goals, features, c, worker_reward))
    manager = goal_objective(goals, features, c, goal_loss, rewards)
    return update(optimizer, worker, manager, grad_clip)


def worker_loss(logits: torch.Tensor, tokens: torch.Tensor, rewards: torch.Tensor
                ) -> torch.Tensor:
    """REINFORCE: -mean over the tokens of reward x log G(y_t | y_<t); ``rewards`` [B, T],
    or one scalar (the authors'). Log-softmax: the authors' log(clip(softmax, 1e-20, 1))
    differs only below 1e-20."""
    log_probs = -F.cross_entropy(logits.flatten(0, 1), tokens.flatten(),
                                 reduction="none").view_as(tokens)
    return -(rewards * log_probs).mean()


class LeakGan(Method):
    """LeakGAN: a manager-worker generator reading the discriminator's leaked features."""

    name = "leakgan"
    best_so_far_phase = ADVERSARIAL
    Config = LeakGanConfig
    profiles = {"paper": PAPER, "authors": AUTHORS}
    published = (resources.files("harness_plugins") / "published" / "leakgan2018.csv",)

    def conditions(self, config: dict) -> dict[str, str]:
        """What one run's rows were made under, from its resolved Config as a dict
        (config.json's "config"; a key it lacks has the Config's default)."""
        def get(key: str):
            return config.get(key, getattr(LeakGanConfig, key))

        variants = {get(key) for key in ("goal_loss", "worker_reward", "reward_rescale")}
        if variants == {"paper"}:
            algorithm = ALGORITHM_PAPER
        elif variants == {"authors"} and get("mle_every") == 0:
            algorithm = ALGORITHM_AUTHORS
        else:  # a mix is neither code: no published figure was made so
            algorithm = ("mixed: " + ", ".join(f"{key}={get(key)}" for key in (
                "goal_loss", "worker_reward", "reward_rescale", "mle_every")))
        scale = get("eval_logit_scale")
        logits = LOGITS_UNSCALED if scale == 1 else \
            f"scaled by {scale:g} (the authors' train=0 path)"
        return {"algorithm": algorithm, "logits": logits}

    def train(self, ctx: RunContext) -> LeakGanGenerator:
        cfg, corpus = ctx.config, ctx.corpus
        if cfg.step_size > corpus.seq_len:
            raise ValueError(f"step_size {cfg.step_size} exceeds the sequence length "
                             f"{corpus.seq_len}")
        generator = new_generator(corpus, cfg, ctx.device)
        disc = generator.discriminator
        mle_optimizer = new_optimizer(generator, cfg.lr)  # the authors keep separate Adam
        adv_optimizer = new_optimizer(generator, cfg.lr)  # states for MLE and adversarial
        disc_optimizer = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr)
        negatives = ctx.rng("disc_negatives", ctx.device)
        shuffle = ctx.rng("disc_real_and_shuffle")
        mle_shuffle = ctx.rng("leakgan_mle_shuffle")
        sampling = ctx.rng("adversarial_sampling", ctx.device)
        parts = {"generator": generator, "mle_optimizer": mle_optimizer,
                 "adv_optimizer": adv_optimizer, "disc_optimizer": disc_optimizer,
                 "disc_rng": negatives, "shuffle_rng": shuffle, "mle_rng": mle_shuffle,
                 "sampling_rng": sampling}

        def discriminator_round() -> float:
            # the authors' negatives come from their train=0 path (Main.py lines 234, 304)
            fake = generator.sample(cfg.disc_negatives, generator=negatives,
                                    scales=generator.logit_scales(training=False)).cpu()
            real = corpus.train[torch.randperm(len(corpus.train), generator=shuffle)
                                [:cfg.disc_negatives]]
            return adv.train_discriminator(disc, disc_optimizer, real, fake, cfg.disc_epochs,
                                           cfg.disc_batch_size, cfg.disc_l2, shuffle,
                                           cfg.disc_shuffle)

        def interleaved_mle() -> tuple[float, float]:
            # mle_shuffle is made (and checkpointed) in either order, drawn from only when
            # shuffling: no other stream moves with ``shuffle``
            return mle_epoch(generator, corpus.train, mle_optimizer, cfg.batch_size,
                             cfg.grad_clip, mle_shuffle, cfg.goal_loss, cfg.shuffle)

        if ctx.resume_phase != ADVERSARIAL:
            self._pretrain(ctx, generator, discriminator_round, interleaved_mle, parts)
        self._adversarial(ctx, generator, adv_optimizer, sampling, discriminator_round,
                          interleaved_mle, parts)
        return generator

    @staticmethod
    def _pretrain(ctx, generator, discriminator_round, mle, parts) -> None:
        """Cycles of discriminator rounds, then MLE epochs, one checkpoint per step."""
        cfg = ctx.config
        per_cycle = cfg.disc_pretrain_rounds + cfg.pretrain_epochs
        # A curve point at the end of each cycle; the discriminator's row comes mid-cycle.
        phase = ctx.phase(PRETRAIN, cfg.pretrain_cycles * per_cycle, parts, unit="step",
                          record_every=per_cycle)
        for step in phase:
            cycle, position = divmod(step, per_cycle)
            epochs_done = cycle * cfg.pretrain_epochs + max(0, position - cfg.disc_pretrain_rounds)
            if position < cfg.disc_pretrain_rounds:
                loss = discriminator_round()
                if position + 1 == cfg.disc_pretrain_rounds:
                    ctx.record(phase="discriminator", epoch=epochs_done, disc_loss=loss)
            else:
                nll, goal = mle()
                phase.record(generator, phase=PRETRAIN, epoch=epochs_done + 1, train_nll=nll,
                             manager_loss=goal)

    @staticmethod
    def _adversarial(ctx, generator, optimizer, sampling, discriminator_round, mle,
                     parts) -> None:
        cfg = ctx.config
        phase = ctx.phase(ADVERSARIAL, cfg.adv_batches, parts, unit="batch",
                          record_every=cfg.adv_eval_every)
        epoch_offset = cfg.pretrain_cycles * cfg.pretrain_epochs
        score = generator.discriminator.prob_real
        for batch in phase:
            for _ in range(cfg.g_steps):
                # their policy-gradient samples come from the train=1 path (Main.py line 283)
                sequences = generator.sample(cfg.batch_size, generator=sampling,
                                             scales=generator.logit_scales(training=True))
                raw = rollout_rewards(generator, sequences, cfg.n_rollouts, score, sampling)
                worker, manager = adversarial_step(generator, optimizer, sequences,
                                                   rescale(raw, cfg), cfg.grad_clip,
                                                   cfg.goal_loss, cfg.worker_reward)
            info = {}
            if cfg.mle_every and batch % cfg.mle_every == 0:
                info["train_nll"], _ = mle()
            losses = [discriminator_round() for _ in range(cfg.d_steps)]
            if losses:
                info["disc_loss"] = losses[-1]
            phase.record(generator, phase=ADVERSARIAL, epoch=epoch_offset + batch + 1,
                         worker_loss=worker, manager_loss=manager,
                         mean_reward=raw.mean().item(), **info)
