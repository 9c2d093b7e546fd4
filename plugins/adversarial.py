"""The machinery of SeqGAN's family (SeqGAN, PG-BLEU, MaliGAN, RankGAN; LeakGAN borrows
its discriminator, RelGAN its highway layer, JSDGAN its start): the CNN discriminator and
how SeqGAN trains it, the start from the shared MLE run, the Monte-Carlo
rollout that turns a sequence-level score into per-token rewards, and the policy-gradient
loop. Mostly the reward differs between the methods: the discriminator's P(real) for
SeqGAN, BLEU against real data for PG-BLEU, a ranker's log-rank for RankGAN.

The discriminator: embedding -> parallel 1-D convolutions of several window sizes -> ReLU ->
max over time -> concatenate -> one highway layer -> dropout -> linear to two classes (0
generated, 1 real), as in the authors' ``discriminator.py`` (LantaoYu/SeqGAN), whose
initialisation it follows too. Two logits rather than one keep the authors' softmax output
and their L2 term on a [features, 2] output matrix; ``prob_real`` is the class-1 column.

The rollout: for a generated sequence Y of length T, the reward of token t is Q_t = the mean
over N completions of the prefix Y_1..t, sampled by the rollout policy, of score(completion),
and Q_T = score(Y); ``score`` maps completed sequences [M, T] to [M] in [0, 1].

The loop: each adversarial batch samples sequences from the generator, rewards every token
by rollout, takes one REINFORCE step, moves the rollout policy towards the generator, then
does whatever the method does between batches (SeqGAN: train the discriminator). The whole
state is checkpointed after every batch, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import RunContext
from harness.devices import row_spans, rows_per_step
from harness.generator import (Decoder, LSTMGenerator, State, TeacherForced, draw_inverse_cdf,
                               eval_mode, sample_from_logits)
from harness.training import build_generator, generator_settings, train_step

Score = Callable[[torch.Tensor], torch.Tensor]


# --- the discriminator ----------------------------------------------------------------

# The authors' sizes (sequence_gan.py); dropout is the drop probability, 1 - keep 0.75.
PAPER = dict(emb_dim=64, filter_sizes=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20),
             num_filters=(100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160),
             dropout=0.25)
# A CPU-sized discriminator: the same architecture with fewer windows and filters.
SMALL = dict(emb_dim=32, filter_sizes=(1, 2, 3, 4, 5, 8, 10, 15, 20),
             num_filters=(32, 64, 64, 64, 64, 32, 32, 48, 48), dropout=0.25)
PAPER_L2 = 0.2


def _windows(tokens: torch.Tensor, table: torch.Tensor) -> list[torch.Tensor]:
    """The running sums of every window of ``tokens`` [R, T]: entry j [R, T-k+1, filters] is
    the sum of taps 0..j, added in order as ``_forward_by_lookup`` adds them (the last entry
    is the convolution)."""
    k = table.shape[0]
    span = tokens.shape[1] - k + 1
    sums = [F.embedding(tokens[:, :span], table[0])]
    for j in range(1, k):
        sums.append(sums[-1] + F.embedding(tokens[:, j:j + span], table[j]))
    return sums


def _pooled_rollout(completed: torch.Tensor, sequences: torch.Tensor,
                    table: torch.Tensor) -> torch.Tensor:
    """The max over positions of one window size's convolution [rows, filters] for the rows
    [completed; sequences], each window summed tap by tap in order 0..k-1 as
    ``_windows`` does (so the values are the same floats)."""
    n_seq, length = sequences.shape
    own = _windows(sequences, table)  # [B, T-k+1, f] per tap: the prefix sums, shared
    running_max = own[-1].cummax(dim=1).values  # [:, p]: max over windows 0..p
    blocks = completed.view(length - 1, -1, n_seq, length)  # (t, rollout, sequence)
    pooled = []
    for t in range(1, length):
        pooled.append(_pool_completions(blocks[t - 1], own, running_max, t, table))
    pooled.append(own[-1].amax(dim=1))
    return torch.cat(pooled)


def _pool_completions(rows: torch.Tensor, own: list[torch.Tensor], running_max: torch.Tensor,
                      t: int, table: torch.Tensor) -> torch.Tensor:
    """[N * B, f] for the completions [N, B, T] of prefixes of length t."""
    k = table.shape[0]
    n_rollouts, n_seq, length = rows.shape
    first, last = max(0, t - k + 1), length - k  # the windows that read a sampled token
    acc = rows.new_empty((n_rollouts, n_seq, last + 1 - first, table.shape[2]),
                         dtype=table.dtype)
    for p in range(first, min(t, last + 1)):  # starting in the prefix: its taps' sum, shared
        acc[:, :, p - first] = own[t - p - 1][:, p]
    # Tap j of window p reads position p + j: sampled for p >= t - j, so positions from
    # max(first, t - j) on add it; at j = 0 that sets the windows that start at t or later.
    for j in range(k):
        start = max(first, t - j)
        looked_up = F.embedding(rows[:, :, start + j:last + 1 + j], table[j])
        if j == 0:
            acc[:, :, start - first:] = looked_up
        else:
            acc[:, :, start - first:] += looked_up
    pooled = acc.amax(dim=2)
    if t >= k:  # windows inside the prefix
        pooled = torch.maximum(pooled, running_max[:, t - k])
    return pooled.reshape(n_rollouts * n_seq, -1)


class Highway(nn.Module):
    """y = t * relu(W x + b) + (1 - t) * x with gate t = sigmoid(W_t x + b_t).

    The authors call their highway helper with gate bias 0, not the usual -2. ``bias=False``
    drops b and b_t: y = t * relu(W x) + (1 - t) * x, t = sigmoid(W_t x), as SeqGAN's first
    code (LantaoYu/SeqGAN @4152436 MLE_SeqGAN/text_classifier.py 16, 19: rnn_cell._linear(...,
    bias=0)) and RelGAN's (weilinie/RelGAN utils/ops.py 28, 57, 75, 77: linear, use_bias
    False) compute it.
    """

    def __init__(self, size: int, bias: bool = True):
        super().__init__()
        self.transform = nn.Linear(size, size, bias=bias)
        self.gate = nn.Linear(size, size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * F.relu(self.transform(x)) + (1.0 - t) * x


class Discriminator(nn.Module):
    """``dropout`` is the drop probability (the paper's keep probability 0.75 is 0.25);
    ``highway_bias`` whether the highway layer has biases (``Highway``)."""

    def __init__(self, vocab_size: int, seq_len: int, emb_dim: int = PAPER["emb_dim"],
                 filter_sizes: tuple[int, ...] = PAPER["filter_sizes"],
                 num_filters: tuple[int, ...] = PAPER["num_filters"],
                 dropout: float = PAPER["dropout"], highway_bias: bool = True):
        super().__init__()
        if len(filter_sizes) != len(num_filters):
            raise ValueError("filter_sizes and num_filters differ in length")
        # A window wider than the sequence has no valid position to pool over.
        kept = [(k, n) for k, n in zip(filter_sizes, num_filters) if k <= seq_len]
        if not kept:
            raise ValueError(f"no window size fits sequences of length {seq_len}")
        self.seq_len = seq_len
        self.filter_sizes = tuple(k for k, _ in kept)
        self.num_filters = tuple(n for _, n in kept)
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.convs = nn.ModuleList(nn.Conv1d(emb_dim, n, k) for k, n in kept)
        features = sum(self.num_filters)
        self.highway = Highway(features, bias=highway_bias)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(features, 2)
        self._init_like_authors()

    def _init_like_authors(self) -> None:
        # The authors' TF initialisers. Their highway's weights are created with no
        # initialiser, so take tf.get_variable's default (discriminator.py 29-30 @e2b52fb,
        # TF r1.0.1; @4152436 tf.nn.rnn_cell._linear, text_classifier.py 16, 19, TF r0.10);
        # it keeps PyTorch's default here, for a layer nobody tuned.
        nn.init.uniform_(self.embedding.weight, -1.0, 1.0)
        for layer in [*self.convs, self.output]:
            nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.2, b=0.2)
            nn.init.constant_(layer.bias, 0.1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [B, 2] (class 1 = real) for int64 tokens [B, T]."""
        return self.output(self.features(tokens))

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """What the output layer reads [B, F] (RankGAN's ranker compares sequences by these)."""
        x = self.embedding(tokens).transpose(1, 2)  # [B, emb, T]: channels first for Conv1d
        # Bias and ReLU commute with the max over time: apply them to [B, F], not [B, F, T].
        pooled = [F.relu(F.conv1d(x, conv.weight).amax(dim=2) + conv.bias) for conv in self.convs]
        return self.above_pooling(torch.cat(pooled, dim=1))

    def above_pooling(self, pooled: torch.Tensor) -> torch.Tensor:
        """Highway and dropout over the pooled convolutions: the features."""
        return self.dropout(self.highway(pooled))

    def _lookup_tables(self) -> list[torch.Tensor]:
        """Per window: [k, vocab, filters], every word's embedding through each filter tap."""
        return [torch.einsum("ve,fek->kvf", self.embedding.weight, conv.weight)
                for conv in self.convs]

    def _forward_by_lookup(self, tokens: torch.Tensor, tables: list[torch.Tensor]) -> torch.Tensor:
        """forward() with each convolution as a sum of k table look-ups, no multiplications.

        conv_k(embedding(x))[p] = sum_j W[:, :, j] @ E[x[p + j]] = sum_j table[j][x[p + j]].
        """
        length = tokens.shape[1]
        pooled = []
        for conv, table in zip(self.convs, tables):
            span = length - table.shape[0] + 1
            acc = F.embedding(tokens[:, :span], table[0])
            for j in range(1, table.shape[0]):
                acc += F.embedding(tokens[:, j:j + span], table[j])
            pooled.append(F.relu(acc.amax(dim=1) + conv.bias))
        return self._logits(torch.cat(pooled, dim=1))

    def _logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.output(self.above_pooling(pooled))

    @torch.no_grad()
    def prob_real(self, tokens: torch.Tensor, batch: int = 1024) -> torch.Tensor:
        """P(real) [B] in eval mode (no dropout), scored in chunks of ``batch`` rows.

        Given more rows than words (a rollout's ~20k completions), the convolutions of
        every word are computed once and looked up: 1.4x faster for the PAPER network on
        the 2-core CPU (2.0 s instead of 2.75 s for 19,520 rows), at the cost of transient
        tables of vocab x sum(k * filters) floats (250 MB at paper size). A few rows (the
        naive loop's 64) are cheaper to convolve.
        """
        with eval_mode(self):
            device = self.output.weight.device
            tables = self._lookup_tables() if len(tokens) > self.embedding.num_embeddings else None
            probs = []
            for i in range(0, len(tokens), batch):
                chunk = tokens[i:i + batch].to(device)
                logits = self(chunk) if tables is None else self._forward_by_lookup(chunk, tables)
                probs.append(torch.softmax(logits, dim=1)[:, 1])
        return torch.cat(probs) if probs else tokens.new_zeros(0, dtype=torch.float)

    @torch.no_grad()
    def prob_real_of_rollout(self, completed: torch.Tensor, sequences: torch.Tensor,
                             batch: int = 1024) -> torch.Tensor:
        """``prob_real(torch.cat([completed, sequences]), batch)``, bit for bit, computing
        each convolution window once.

        ``completed`` [(T-1) * N * B, T] are the completions of ``sequences`` [B, T] as
        ``Rollout._complete`` orders them: (prefix length t = 1..T-1, rollout, sequence).
        A window that lies inside a prefix is the same in all N completions and in the
        sequence itself, so it is computed once from ``sequences``; a window that starts
        in the prefix shares the sum of its prefix taps, taken in the same order. Each row
        then looks up only the taps that read its sampled tokens; the max over positions
        is exact, so splitting it changes no bit.
        """
        tokens = torch.cat([completed, sequences])
        if len(tokens) <= self.embedding.num_embeddings:
            return self.prob_real(tokens, batch)  # convolved, as prob_real does
        with eval_mode(self):
            device = self.output.weight.device
            completed, sequences = completed.to(device), sequences.to(device)
            pooled = torch.cat([
                F.relu(_pooled_rollout(completed, sequences, table) + conv.bias)
                for conv, table in zip(self.convs, self._lookup_tables())], dim=1)
            probs = [torch.softmax(self._logits(pooled[i:i + batch]), dim=1)[:, 1]
                     for i in range(0, len(pooled), batch)]
        return torch.cat(probs)

    def l2_penalty(self) -> torch.Tensor:
        """The authors' L2 term: tf.nn.l2_loss (sum of squares / 2) of the output W and b only."""
        return 0.5 * (self.output.weight.square().sum() + self.output.bias.square().sum())


# How the discriminator's mixed real and fake rows are ordered: "epoch", reshuffled every
# epoch over all rows (LantaoYu/SeqGAN MLE_SeqGAN/dis_dataloader.py 88-102 @4152436:
# batch_iter); "round", shuffled once a round and cut to whole batches, the same batches in
# every epoch of the round (dataloader.py 63-75 @e2b52fb, sequence_gan.py 125-129;
# CR-Gjx/LeakGAN Synthetic Data/dataloader.py 63-81, Main.py 237-241 @4044de6).
DISC_SHUFFLES = ("epoch", "round")


def train_discriminator(disc: Discriminator, optimizer: torch.optim.Optimizer,
                        real: torch.Tensor, fake: torch.Tensor, epochs: int, batch_size: int,
                        l2: float = PAPER_L2, rng: torch.Generator | None = None,
                        shuffle: str = "epoch") -> float:
    """``epochs`` passes over real (label 1) and fake (label 0) rows; the mean batch loss.

    Real and fake rows are shuffled together into mixed mini-batches, as the authors'
    Dis_dataloader does, every epoch or once (``shuffle``, see DISC_SHUFFLES; without
    ``rng`` the order is fixed: all real, then all fake). The loss is mean cross-entropy +
    ``l2`` * l2_penalty(), the authors' loss; the paper's Adam 1e-4 is the caller's
    ``optimizer``.
    """
    disc.train()
    device = disc.output.weight.device
    tokens = torch.cat([real, fake])
    labels = torch.cat([torch.ones(len(real), dtype=torch.long),
                        torch.zeros(len(fake), dtype=torch.long)])
    if shuffle == "round":  # whole batches only; fewer rows than a batch are one batch
        once = torch.randperm(len(tokens), generator=rng)
        once = once[:max(len(once) // batch_size * batch_size, min(len(once), batch_size))]
    total, batches = 0.0, 0
    for _ in range(epochs):
        if shuffle == "round":
            order = once
        else:
            order = torch.randperm(len(tokens), generator=rng) if rng is not None \
                else torch.arange(len(tokens))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            logits = disc(tokens[idx].to(device))
            loss = F.cross_entropy(logits, labels[idx].to(device)) + l2 * disc.l2_penalty()
            total += train_step(loss, optimizer, "the discriminator loss")
            batches += 1
    return total / max(batches, 1)


class DiscriminatorRounds:
    """The discriminator trained SeqGAN's way (SeqGAN's and MaliGAN's): each round,
    ``disc_negatives`` fresh generated rows against as many real rows, ``disc_epochs``
    epochs. ``parts`` is its state, checkpointed beside the generator in every phase;
    ``highway_bias`` as ``Discriminator``'s, ``shuffle`` as ``train_discriminator``'s."""

    def __init__(self, ctx: RunContext, cfg: Any, highway_bias: bool = True,
                 shuffle: str = "epoch"):
        corpus = ctx.corpus
        sizes = PAPER if cfg.disc_size == "paper" else SMALL
        self.cfg, self.real, self.shuffle = cfg, corpus.train, shuffle
        self.disc = Discriminator(corpus.vocab_size, corpus.seq_len, **sizes,
                                  highway_bias=highway_bias).to(ctx.device)
        self.optimizer = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr)
        self.negatives_rng = ctx.rng("disc_negatives", ctx.device)
        self.shuffle_rng = ctx.rng("disc_real_and_shuffle")
        self.parts = {"discriminator": self.disc, "disc_optimizer": self.optimizer,
                      "disc_rng": self.negatives_rng, "shuffle_rng": self.shuffle_rng}

    def __call__(self, generator: Decoder) -> float:
        """One round against ``generator``'s samples; the mean loss."""
        cfg = self.cfg
        fake = generator.sample(cfg.disc_negatives, generator=self.negatives_rng).cpu()
        real = self.real[torch.randperm(len(self.real), generator=self.shuffle_rng)
                         [:cfg.disc_negatives]]
        return train_discriminator(self.disc, self.optimizer, real, fake, cfg.disc_epochs,
                                   cfg.disc_batch_size, cfg.disc_l2, self.shuffle_rng,
                                   self.shuffle)


@dataclass
class Pretraining:
    """What a method trains after MLE and before its adversarial phase (its critic)."""

    phase: str                                      # its checkpoints' and curve row's phase
    rounds: int
    train_round: Callable[[Decoder], float]         # one round against the generator: the loss
    parts: dict[str, Any]                           # its state, checkpointed
    loss_name: str                                  # the curve column of the last round's loss


def mle_settings(cfg: Any, **changed: Any) -> dict[str, Any]:
    """The MLE run a method of this family starts from: its pre-training epochs and its
    generator's settings (``changed`` replaces some, e.g. RelGAN's own learning rate)."""
    return {"epochs": cfg.pretrain_epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "grad_clip": cfg.grad_clip, "emb_dim": cfg.emb_dim, "hidden_dim": cfg.hidden_dim,
            "shuffle": cfg.shuffle, "eval_every": cfg.eval_every,
            "lstm_biases": cfg.lstm_biases, **generator_settings(cfg), **changed}


def start_from_mle(ctx: RunContext, critic: Pretraining | None = None,
                   phase: str | None = None) -> Decoder:
    """The generator the method's main ``phase`` (default: adversarial) starts from, and
    the shared MLE pre-training (``pretrain_epochs``), then the
    critic's checkpointed rounds; when the run resumes in the main phase, an empty
    generator that ``train_policy_gradient`` (or the method's own loop) fills."""
    cfg = ctx.config
    if ctx.resume_phase == (phase or PHASE):
        return build_generator(ctx.corpus, cfg, ctx.device)
    generator = ctx.start_from("mle", **mle_settings(cfg))
    if critic is not None:
        rounds = ctx.phase(critic.phase, critic.rounds, critic.parts, unit="round",
                           record_every=critic.rounds, desc=critic.phase)
        for _ in rounds:
            loss = critic.train_round(generator)
            rounds.record(phase=critic.phase, epoch=cfg.pretrain_epochs,
                          **{critic.loss_name: loss})
    return generator


# --- the rollout ------------------------------------------------------------------------

def _draw(logits: torch.Tensor, greedy: bool, multinomial: bool,
          generator: torch.Generator | None) -> torch.Tensor:
    """One token per row: argmax, torch.multinomial (the naive baseline) or inverse CDF."""
    if greedy:
        return logits.argmax(dim=-1)
    if multinomial:
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return sample_from_logits(logits, generator=generator)[0]


def _draw_in_place(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``sample_from_logits(logits, generator=generator)[0]`` (the same uniform per row, the
    same floats), overwriting ``logits`` with their exponentials."""
    uniform = torch.rand(len(logits), 1, device=logits.device, generator=generator)
    return draw_inverse_cdf(logits, uniform, logits, log_probs=False)[0]


# Scores [groups, B] -> rewards [groups, B], each row one batch's completions of the same
# prefix length and rollout (RankGAN's authors: a softmax across them).
AcrossBatch = Callable[[torch.Tensor], torch.Tensor]


def _each_batch(score: Score, across_batch: AcrossBatch) -> Score:
    return lambda rows: across_batch(score(rows).float()[None])[0]


def _score_in_chunks(score: Score, rows: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([score(rows[i:i + batch]).float().to(rows.device)
                      for i in range(0, len(rows), batch)])


class Rollout:
    """The rollout policy G_beta that completes prefixes: a frozen copy of the generator,
    moved towards it by ``update`` after every adversarial batch.

    ``update_rate`` r: theta_beta <- r * theta_beta + (1 - r) * theta_generator. With r = 0
    the rollout policy is the generator as it stands, which is what the paper says ("G_beta
    is set the same as the generator") and what the authors' code does whatever rate it is
    given: their rollout network's weights are ``tf.identity`` of the live generator
    variables, wired into a sampling graph built once, and ``update_params`` only builds new
    tensors that graph never reads (LantaoYu/SeqGAN rollout.py, first commit to head). With
    r = 0.8 it is a delayed copy, as ``update_params`` is written and as the PyTorch ports
    read it.

    Any ``Decoder`` rolls out: the LSTM by its own path (``_complete``: its states read in
    one teacher-forced pass, spans of rows projected into one buffer), every other through
    the decoding contract alone (``_complete_by_steps``).
    """

    # About how many rows one step of the completions projects and draws at once on the
    # CPU: chosen by measurement (benchmarks/bench_rows.py). It changes no token: the
    # uniforms are drawn span after span, and the CPU's random stream is the same in one
    # call or in several; nor any float (``row_spans``).
    ROLLOUT_ROWS = 4096

    def __init__(self, generator: Decoder, update_rate: float = 0.0):
        self.update_rate = update_rate
        self.policy = copy.deepcopy(generator).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, generator: Decoder) -> None:
        """theta_beta <- r * theta_beta + (1 - r) * theta_generator; the embedding is copied
        as it is (as the authors' ``update_params`` writes it)."""
        r = self.update_rate
        mine = dict(self.policy.named_parameters())
        for name, theirs in generator.named_parameters():
            if name.startswith("embedding."):
                mine[name].copy_(theirs)
            else:
                mine[name].mul_(r).add_(theirs, alpha=1.0 - r)

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "update_rate": self.update_rate}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.update_rate = state["update_rate"]

    def _prefix_states(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) [T-1, B, H] after reading y_1..y_t, t = 1..T-1, one teacher-forced pass."""
        policy = self.policy
        emb = policy.embedding(policy.shifted_inputs(tokens))
        state: State | None = None
        hs, cs = [], []
        # Step by step because nn.LSTM returns the cell state of the last step only.
        for t in range(tokens.shape[1]):
            _, state = policy.lstm(emb[:, t:t + 1], state)
            hs.append(state[0][0])
            cs.append(state[1][0])
        return torch.stack(hs[1:]), torch.stack(cs[1:])

    @torch.no_grad()
    def rewards(self, sequences: torch.Tensor, n_rollouts: int, score: Score | Discriminator,
                generator: torch.Generator | None = None, greedy: bool = False,
                chunk: int | None = None, score_batch: int = 1 << 16,
                across_batch: AcrossBatch | None = None) -> torch.Tensor:
        """Q [B, T] for ``sequences`` [B, T], every completion advanced in one batch.

        All completed rows and ``sequences`` go to ``score`` together, ``score_batch`` rows
        a call (one call at paper sizes). A ``Discriminator`` scores them all in one call
        to ``prob_real_of_rollout``, which knows the rows' structure and shares the
        convolution windows that lie in the prefixes. ``across_batch`` turns the scores of each prefix
        length and rollout, [groups, B], into rewards relative to the batch before the
        rollouts are averaged. ``greedy`` completes with the argmax instead of sampling
        (tests).
        """
        tokens = sequences.to(self.policy.device)
        n_seq, length = tokens.shape
        chunk = chunk or rows_per_step(tokens.device, 256)
        if isinstance(self.policy, LSTMGenerator):
            completed = self._complete(tokens, n_rollouts, generator, greedy, chunk)
        else:
            completed = self._complete_by_steps(tokens, n_rollouts, generator, greedy)
        if isinstance(score, Discriminator):
            scores = score.prob_real_of_rollout(completed, tokens).to(tokens.device)
        else:
            scores = _score_in_chunks(score, torch.cat([completed, tokens]), score_batch)
        if across_batch is not None:  # rows in blocks of the batch: (prefix, rollout), then whole
            scores = across_batch(scores.view(-1, n_seq)).reshape(-1)
        rows = len(completed)  # ordered (prefix length, rollout, sequence)
        q = scores[:rows].view(length - 1, n_rollouts, n_seq).mean(dim=1)
        return torch.cat([q.T, scores[rows:, None]], dim=1)

    def _complete(self, tokens: torch.Tensor, n_rollouts: int, generator: torch.Generator | None,
                  greedy: bool, chunk: int) -> torch.Tensor:
        """Completions [(T-1) * N * B, T] of every prefix, rows ordered (t, n, b).

        With that order the rows sampling at position s (prefixes t < s) come first: each
        step advances them by one token and the next prefix's block joins with its
        teacher-forced state, so no prefix is recomputed (expanding all rows from the start
        token instead does twice the LSTM and softmax work: 2x slower on the CPU). The
        output layer and sampling run about ``ROLLOUT_ROWS`` rows at a time (spans of whole
        ``chunk``s, the last, shorter one alone: ``row_spans``) into one reused buffer.
        """
        policy = self.policy
        n_seq, length = tokens.shape
        block = n_rollouts * n_seq  # rows per prefix length
        rows = (length - 1) * block
        completed = tokens.expand(length - 1, n_rollouts, n_seq, length).reshape(rows, length).clone()
        if length == 1:
            return completed
        h, c = (s.unsqueeze(1).expand(-1, n_rollouts, -1, -1).reshape(1, rows, -1).clone()
                for s in self._prefix_states(tokens))
        # One logits buffer for every span, drawn in place without log-probabilities (a
        # fresh [rows, vocab] tensor per step costs page faults).
        span_rows = rows_per_step(tokens.device, self.ROLLOUT_ROWS)
        widest = max((s.stop - s.start for s in row_spans(rows, chunk, span_rows)), default=0)
        logits = h.new_empty(widest, policy.output.out_features)
        for step in range(1, length):  # the 0-based position being sampled
            ready, active = (step - 1) * block, step * block
            if ready:  # rows that sampled position step - 1 read that token
                inputs = policy.embedding(completed[:ready, step - 1:step])
                _, (h[:, :ready], c[:, :ready]) = policy.lstm(inputs, (h[:, :ready], c[:, :ready]))
            for span in row_spans(active, chunk, span_rows):
                out = torch.addmm(policy.output.bias, h[0, span], policy.output.weight.t(),
                                  out=logits[:span.stop - span.start])  # what policy.output computes
                completed[span, step] = out.argmax(dim=-1) if greedy else _draw_in_place(out, generator)
        return completed

    def _complete_by_steps(self, tokens: torch.Tensor, n_rollouts: int,
                           generator: torch.Generator | None, greedy: bool) -> torch.Tensor:
        """``_complete`` for any ``Decoder``, through its contract alone: the sequences are
        read once, token by token; after each prefix y_1..y_t its state is picked N times
        over (``select_state``) and those rows are stepped to the end, drawing one token a
        row and position. The rows come out ordered (t, n, b), as ``_complete``'s."""
        policy = self.policy
        n_seq, length = tokens.shape
        block = n_rollouts * n_seq  # rows per prefix length
        completed = tokens.expand(length - 1, n_rollouts, n_seq, length).reshape(-1, length).clone()
        each_rollout = torch.arange(n_seq, device=tokens.device).repeat(n_rollouts)  # (n, b)
        state = policy.start_state(n_seq)
        logits, state = policy.step(tokens.new_full((n_seq,), policy.start_token), state)
        for t in range(1, length):  # the prefix y_1..y_t read: positions t.. to draw
            logits, state = policy.step(tokens[:, t - 1], state)
            rows = slice((t - 1) * block, t * block)
            ahead, ahead_state = logits[each_rollout], policy.select_state(state, each_rollout)
            for position in range(t, length):
                drawn = _draw(ahead, greedy, False, generator)
                completed[rows, position] = drawn
                if position + 1 < length:
                    ahead, ahead_state = policy.step(drawn, ahead_state)
        return completed

    @torch.no_grad()
    def rewards_naive(self, sequences: torch.Tensor, n_rollouts: int, score: Score,
                      generator: torch.Generator | None = None, greedy: bool = False,
                      multinomial: bool = False,
                      across_batch: AcrossBatch | None = None) -> torch.Tensor:
        """The reference loop: for each rollout, for each prefix, read it and sample the rest.

        As the authors' ``get_reward`` does (with ``multinomial=True`` it samples as
        they and the PyTorch ports do); the benchmark's baseline and the tests' reference.
        """
        policy = self.policy
        tokens = sequences.to(policy.device)
        n_seq, length = tokens.shape
        total = torch.zeros(n_seq, length - 1, device=tokens.device)
        inputs = policy.shifted_inputs(tokens)
        if across_batch is not None:
            score = _each_batch(score, across_batch)
        for _ in range(n_rollouts):
            for t in range(1, length):
                logits, state = policy(inputs[:, :t + 1])  # read start, y_1..y_t
                completion = tokens.clone()
                for s in range(t, length):
                    completion[:, s] = _draw(logits[:, -1], greedy, multinomial, generator)
                    if s + 1 < length:
                        logits, state = policy(completion[:, s:s + 1], state)
                total[:, t - 1] += score(completion).float()
        last = score(tokens).float().to(tokens.device)
        return torch.cat([total / n_rollouts, last[:, None]], dim=1)


# --- the policy-gradient loop -----------------------------------------------------------

@dataclass
class PolicyGradientSettings:
    batches: int            # adversarial batches (the authors' TOTAL_BATCH)
    g_steps: int            # generator updates per batch
    batch_size: int         # sequences per generator update
    n_rollouts: int         # Monte-Carlo completions per prefix
    lr: float               # Adam, for the adversarial generator updates
    grad_clip: float
    rollout_update_rate: float
    eval_every: int         # batches between learning-curve points
    pg_loss: str = "mean"   # see PG_LOSSES

    @classmethod
    def of(cls, config) -> "PolicyGradientSettings":
        """The settings of a method's config (its ``adv_*`` and generator fields)."""
        return cls(batches=config.adv_batches, g_steps=config.g_steps,
                   batch_size=config.batch_size, n_rollouts=config.n_rollouts, lr=config.lr,
                   grad_clip=config.grad_clip, rollout_update_rate=config.rollout_update_rate,
                   eval_every=config.adv_eval_every, pg_loss=config.pg_loss)


# How the policy-gradient loss -sum_t log G(y_t | y_<t) Q_t is reduced over the batch:
# "mean", the paper's expectation; "sum", the authors' code (LantaoYu/SeqGAN
# MLE_SeqGAN/model.py lines 114-124 and pg_bleu/model.py 115-125 @4152436, generator.py
# 108-117 @e2b52fb; cookielee77/RankGan-NIPS2017 generator.py 117-119 @912b3b3:
# tf.reduce_sum over batch and tokens, then the global-norm clip at 5.0). Adam is all but blind to the scale,
# the clip is not: summed, the gradient is batch-size times larger and clipped far sooner.
# The values are what a run's conditions say, and what a published figure names.
PG_LOSSES = {"mean": "averaged over the batch", "sum": "summed over the batch"}


def pg_conditions(config: dict) -> dict[str, str]:
    """A policy-gradient method's conditions: how its loss was reduced (a run recorded
    before the setting existed averaged it)."""
    return {"pg_loss": PG_LOSSES[config.get("pg_loss", "mean")]}


PHASE = "adversarial"


def policy_gradient_step(generator: TeacherForced, optimizer: torch.optim.Optimizer,
                         sequences: torch.Tensor, rewards: torch.Tensor, grad_clip: float,
                         pg_loss: str = "mean") -> float:
    """One REINFORCE update: loss = -sum_t log G(y_t | y_<t) * Q_t, averaged or summed over
    the batch (``pg_loss``, see PG_LOSSES)."""
    generator.train()
    log_probs = generator.token_log_probs(sequences)
    per_sequence = -(log_probs * rewards.to(log_probs.device)).sum(dim=1)
    loss = per_sequence.sum() if pg_loss == "sum" else per_sequence.mean()
    return train_step(loss, optimizer, "the policy-gradient loss", generator.parameters(),
                      grad_clip)


def train_policy_gradient(ctx: RunContext, generator: Decoder,
                          score: Score | Discriminator, settings: PolicyGradientSettings,
                          epoch_offset: int,
                          between: Callable[[int], dict] | None = None,
                          extra: dict[str, Any] | None = None,
                          across_batch: AcrossBatch | None = None) -> Decoder:
    """Adversarial training; ``extra`` names further parts of the state to checkpoint
    alongside (the discriminator, its optimiser and random streams); ``score`` and
    ``across_batch`` as in ``Rollout.rewards``."""
    optimizer = torch.optim.Adam(generator.parameters(), lr=settings.lr)
    rollout = Rollout(generator, settings.rollout_update_rate)
    rng = ctx.rng("policy_gradient_sampling", ctx.device)
    phase = ctx.phase(PHASE, settings.batches, {"generator": generator, "optimizer": optimizer,
                                                "rollout": rollout, "sampling_rng": rng,
                                                **(extra or {})},
                      unit="batch", record_every=settings.eval_every)
    for batch in phase:
        for _ in range(settings.g_steps):
            sequences = generator.sample(settings.batch_size, generator=rng)
            rewards = rollout.rewards(sequences, settings.n_rollouts, score, generator=rng,
                                      across_batch=across_batch)
            loss = policy_gradient_step(generator, optimizer, sequences, rewards,
                                        settings.grad_clip, settings.pg_loss)
        rollout.update(generator)
        info = between(batch) if between is not None else {}
        phase.record(generator, phase=PHASE, epoch=epoch_offset + batch + 1, pg_loss=loss,
                     mean_reward=rewards.mean().item(), **info)
    return generator
