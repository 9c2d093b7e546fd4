"""RelGAN (Nie, Narodytska and Patel, ICLR 2019): a relational-memory generator trained
through the Gumbel-softmax relaxation against a multi-representation CNN discriminator
with the relativistic standard GAN (RSGAN) loss, after MLE pre-training.

The generator samples y_t = argmax(o_t + g_t) (an exact draw from softmax(o_t)) and hands
the discriminator the relaxed one-hot softmax(beta * (o_t + g_t)) instead, so the
discriminator's score is differentiable in the generator's weights; the inverse temperature
beta grows from 1 to ``beta_max`` over training (``inverse_temperature``). As in the
authors' code (weilinie/RelGAN models/rmc_vanilla.py) the next step reads the embedding of
the hard token, so the gradient reaches earlier steps through the memory, not the inputs.

The discriminator (``MultiRepDiscriminator``) embeds its input with R small embedding
matrices (one [vocab, R * d] matrix, read d columns at a time), runs the same CNN over each
of the R representations, and scores each; the loss averages over the R scores, as the
authors' code does (a [batch * R] logit vector under one mean).

``generator = "rmc"`` is the paper's relational memory (Santoro et al. 2018, as the
authors' ``utils/models/relational_memory.py``); ``"lstm"`` swaps in the shared LSTM (the
paper's "RelGAN with LSTM" ablation) with the very weights of ``LSTMGenerator``, so it
starts from the shared MLE run (``ctx.start_from("mle")``) and gives a like-for-like row beside
SeqGAN. The RMC variant pre-trains its own generator by MLE with the same settings; its
curve rows carry the same phase name, "mle".

Where the paper's text and the authors' code (weilinie/RelGAN @7402725) differ, for the
figure the table compares:

| | the paper's text | the authors' code and answers | ours: default, paper | ours: authors |
| --- | --- | --- | --- | --- |
| oracle | "the synthetic data" | their own TensorFlow-seeded LSTM (utils/models/OracleLstm.py) | the run's data set: ``oracle`` is SeqGAN's | run on ``oracle-relgan``, theirs |
| beta_max, length 20 | 100 or 1,000 | 1 for the NLL-oracle entry (first author, issue #22) | 100 | 1 |
| generator embedding | not stated | a normal of std 1/sqrt(vocab), 1/sqrt(5,000) on the oracle, redrawn beyond 2 std (models/rmc_vanilla.py 14-15, utils/ops.py 17-20) | nn.Embedding's N(0, 1) | the code's for the RMC (``emb_init``); the LSTM's is the shared MLE run's |
| discriminator highway | not stated | no biases, gate bias 0 (utils/ops.py 28, 66-80; models/rmc_vanilla.py 133) | biases | none (``highway_bias``) |
| MLE pre-training order | not stated | the file in order, every epoch (utils/utils.py 43-53, oracle_loader.py 27-35) | shuffled | in order (``shuffle``) |
| LSTM biases ("lstm" generator) | not stated | one per gate (models/lstm_vanilla.py 142-158) | two, as nn.LSTM | one (``lstm_biases``) |
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from harness import Method, hookimpl
from harness.api import Corpus, RunContext
from harness.config import require
from harness.devices import rows_per_step
from harness.generator import TeacherForced, require_lstm_biases, sample_from_logits
from harness.training import train_by_mle, train_step
from harness_plugins import adversarial as adv

PHASE = "adversarial"
GENERATORS = ("rmc", "lstm")
# The authors' schedules (oracle_train.py get_fixed_temperature, the paper's Appendix):
# "no" keeps beta_max throughout, the others rise from 1 to beta_max over N steps.
SCHEDULES = ("no", "lin", "exp", "log", "sigmoid", "quad", "sqrt")
EMB_INITS = ("torch", "authors")  # RelGanConfig.emb_init


@hookimpl
def register_methods(register):
    register(RelGan())


@hookimpl
def register_generators(register):
    register(RelGanGenerator)


@dataclass
class RelGanConfig:
    generator: str = "rmc"          # "rmc" (the paper) or "lstm" (the shared LSTM generator)
    emb_dim: int = 32               # generator token embedding (the authors: gen_emb_dim 32)
    emb_init: str = "torch"         # the RMC generator's embedding: "torch", nn.Embedding's
                                    # N(0, 1); "authors", a normal of std 1/sqrt(vocab) cut at
                                    # 2 std (models/rmc_vanilla.py 14-15, utils/ops.py 17-20)
    hidden_dim: int = 32            # LSTM units of the "lstm" generator (the authors: 32)
    lstm_biases: int = 2            # LSTM biases per gate: 2 as nn.LSTM, 1 as the authors' LSTM
                                    # (bias_hh zero and frozen); the "lstm" generator only
    mem_slots: int = 1              # RMC memory slots (the authors: 1)
    num_heads: int = 2              # RMC attention heads (the authors: 2)
    head_size: int = 16             # RMC units per head; memory = heads * size (authors: 256)
    pretrain_epochs: int = 3        # MLE pre-training epochs (the authors: 150)
    pretrain_lr: float = 0.01       # MLE Adam (the authors' gpre_lr 1e-2)
    batch_size: int = 64            # generator and discriminator batch (the authors: 64)
    grad_clip: float = 5.0          # gradient-norm clip, every phase (as the authors)
    shuffle: bool = True            # MLE pre-training shuffles (see the mle method)
    eval_every: int = 5             # MLE epochs between curve points
    disc_emb_dim: int = 64          # discriminator embedding R * d (the authors: 64)
    num_rep: int = 16               # R embedded representations, d = emb / R (authors: 64, d = 1)
    disc_filters: int = 64          # filters per window size 2, 3, 4, 5 (the authors: 300)
    disc_hidden: int = 100          # the fully connected layer before the score (authors: 100)
    highway_bias: bool = True       # the discriminator's highway has biases; the authors'
                                    # has none (utils/ops.py 28, 75, 77: linear, use_bias False)
    disc_lr: float = 1e-4           # discriminator Adam (the authors: 1e-4)
    adv_lr: float = 1e-4            # generator Adam, adversarial phase (the authors: 1e-4)
    adv_steps: int = 30             # adversarial iterations (the authors, oracle: 3,000)
    g_steps: int = 1                # generator updates per iteration (the authors: 1)
    d_steps: int = 3                # discriminator updates per iteration (the authors: 5)
    beta_max: float = 100.0         # the largest inverse temperature (paper: 100, 1000)
    beta_schedule: str = "exp"      # how beta rises (the paper's default: exponential)
    beta_horizon: int = 0           # N of the schedule; 0: adv_steps (the authors fix 5,000)
    adv_eval_every: int = 10        # adversarial iterations between curve points (authors: 20)

    def __post_init__(self):
        require(self, positive=("grad_clip", "pretrain_lr", "adv_lr", "disc_lr"),
                choices={"generator": GENERATORS, "beta_schedule": SCHEDULES,
                         "emb_init": EMB_INITS},
                at_least_one=("emb_dim", "hidden_dim", "mem_slots", "num_heads", "head_size",
                              "batch_size", "eval_every", "disc_emb_dim", "num_rep",
                              "disc_filters", "disc_hidden", "g_steps", "adv_eval_every",
                              "beta_max"))
        require_lstm_biases(self)
        if self.disc_emb_dim % self.num_rep:
            raise ValueError(f"disc_emb_dim ({self.disc_emb_dim}) must be a multiple of "
                             f"num_rep ({self.num_rep})")


# The authors' oracle run script (weilinie/RelGAN oracle/experiments/oracle_relgan.py) and
# oracle_train.py: RMC with 1 slot, 2 heads of 256; 150 MLE epochs at Adam 1e-2; 3,000
# adversarial iterations of 1 generator and 5 discriminator steps, Adam 1e-4 both,
# batch 64; discriminator embedding 64 in 64 representations, 300 filters of each window
# 2-5 (models/rmc_vanilla.py); beta exponential over N = 5,000 (get_fixed_temperature),
# beta_max 100 (the paper's RelGAN(100); for its RelGAN(1000), --set beta_max=1000; its
# length-20 NLL-oracle entry used beta_max 1, so beta stays 1, as the first author says in
# weilinie/RelGAN issue #22: --set beta_max=1).
PAPER = {"head_size": 256, "pretrain_epochs": 150, "num_rep": 64, "disc_filters": 300,
         "adv_steps": 3000, "d_steps": 5, "beta_horizon": 5000, "adv_eval_every": 20}
# What made the published length-20 NLL-oracle figure (6.680): the same script at beta_max 1
# (issue #22), on RelGAN's own oracle, which is the data set ``oracle-relgan`` (run it with
# -d oracle-relgan; on SeqGAN's oracle the figure is not comparable). Their code besides:
# the generator's embedding a truncated normal of std 1/sqrt(vocab) (models/rmc_vanilla.py
# 14-15), MLE over the file in order (utils/utils.py 43-53, oracle_loader.py 27-35), a
# highway without biases (utils/ops.py 28, 75, 77), an LSTM (the "lstm" generator,
# models/lstm_vanilla.py 142-158) with one bias per gate.
AUTHORS = {**PAPER, "beta_max": 1.0, "emb_init": "authors", "shuffle": False,
           "highway_bias": False, "lstm_biases": 1}


def inverse_temperature(step: int, beta_max: float, horizon: int, schedule: str = "exp") -> float:
    """beta at adversarial iteration ``step`` of a schedule over ``horizon`` (N) iterations:
    exp is beta_max ** (n / N), the paper's default; the others as the authors' code."""
    n, big_n, top = step, max(horizon, 2), beta_max  # N >= 2: three schedules divide by N - 1
    if schedule == "no":
        return top
    if schedule == "lin":
        return 1 + n / (big_n - 1) * (top - 1)
    if schedule == "exp":
        return top ** (n / big_n)
    if schedule == "log":
        return 1 + (top - 1) / math.log(big_n) * math.log(n + 1)
    if schedule == "sigmoid":
        return (top - 1) / (1 + math.exp((big_n / 2 - n) * 20 / big_n)) + 1
    if schedule == "quad":
        return (top - 1) / (big_n - 1) ** 2 * n ** 2 + 1
    if schedule == "sqrt":
        return (top - 1) / math.sqrt(big_n - 1) * math.sqrt(n) + 1
    raise ValueError(f"unknown beta schedule {schedule!r}; expected one of {SCHEDULES}")


def gumbel_noise(shape: torch.Size, device: torch.device,
                 generator: torch.Generator | None = None, eps: float = 1e-10) -> torch.Tensor:
    """g = -log(-log u), u ~ U(0, 1): argmax(o + g) is a draw from softmax(o)."""
    u = torch.rand(shape, device=device, generator=generator)
    # in place: the same element-wise steps in the same order, without five more buffers
    return u.add_(eps).log_().neg_().add_(eps).log_().neg_()


def rsgan_losses(real_scores: torch.Tensor, fake_scores: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The relativistic standard GAN: (L_D, L_G) = (-mean log sigmoid(D(real) - D(fake)),
    -mean log sigmoid(D(fake) - D(real))), pairing real and fake rows element by element."""
    gap = real_scores - fake_scores
    return F.softplus(-gap).mean(), F.softplus(gap).mean()


# --- the generator -----------------------------------------------------------------------

class RelationalMemory(nn.Module):
    """One step of the relational memory core: the input joins the memory as an extra row,
    multi-head self-attention over the rows (+ residual, layer norm), a 2-layer MLP
    (+ residual, layer norm), the input row dropped, then LSTM-like input and forget gates
    per unit (Santoro et al. 2018; the authors' relational_memory.py, one block)."""

    def __init__(self, input_size: int, mem_slots: int, num_heads: int, head_size: int,
                 forget_bias: float = 1.0, input_bias: float = 0.0):
        super().__init__()
        self.mem_slots, self.num_heads, self.head_size = mem_slots, num_heads, head_size
        self.mem_size = num_heads * head_size
        self.forget_bias, self.input_bias = forget_bias, input_bias
        self.project_input = nn.Linear(input_size, self.mem_size)
        self.qkv = nn.Linear(self.mem_size, 3 * self.mem_size, bias=False)  # key size = head size
        self.qkv_norm = nn.LayerNorm(3 * self.mem_size)
        self.attention_norm = nn.LayerNorm(self.mem_size)
        self.mlp = nn.Sequential(nn.Linear(self.mem_size, self.mem_size), nn.ReLU(),
                                 nn.Linear(self.mem_size, self.mem_size))
        self.mlp_norm = nn.LayerNorm(self.mem_size)
        self.gate_input = nn.Linear(self.mem_size, 2 * self.mem_size, bias=False)
        self.gate_memory = nn.Linear(self.mem_size, 2 * self.mem_size, bias=False)

    def initial_state(self, batch: int, device: torch.device) -> torch.Tensor:
        """[batch, slots, mem_size]: each slot a distinct one-hot row (identity, padded)."""
        eye = torch.eye(self.mem_slots, max(self.mem_slots, self.mem_size), device=device)
        return eye[:, :self.mem_size].expand(batch, -1, -1)

    def attend(self, memory: torch.Tensor) -> torch.Tensor:
        """Multi-head scaled dot-product self-attention over the rows of ``memory``."""
        batch, rows, _ = memory.shape
        qkv = self.qkv_norm(self.qkv(memory)).view(batch, rows, self.num_heads, 3 * self.head_size)
        q, k, v = qkv.transpose(1, 2).split(self.head_size, dim=-1)  # [B, H, rows, size] each
        # The authors (and Sonnet) scale by the whole per-head q, k, v width.
        weights = torch.softmax(q @ k.transpose(-1, -2) * (3 * self.head_size) ** -0.5, dim=-1)
        return (weights @ v).transpose(1, 2).reshape(batch, rows, self.mem_size)

    def forward(self, inputs: torch.Tensor, memory: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output [B, slots * mem_size], next memory) for inputs [B, input_size]."""
        row = self.project_input(inputs).unsqueeze(1)  # [B, 1, mem]
        joined = torch.cat([memory, row], dim=1)
        joined = self.attention_norm(joined + self.attend(joined))
        joined = self.mlp_norm(joined + self.mlp(joined))
        candidate = joined[:, :-1]
        gates = self.gate_memory(torch.tanh(memory)) + self.gate_input(row)
        input_gate, forget_gate = gates.chunk(2, dim=-1)
        next_memory = (torch.sigmoid(input_gate + self.input_bias) * torch.tanh(candidate)
                       + torch.sigmoid(forget_gate + self.forget_bias) * memory)
        return next_memory.flatten(1), next_memory


class RelGanGenerator(TeacherForced):
    """embedding -> RMC or LSTM -> linear over the vocabulary. With ``core = "lstm"`` its
    parameters are named and shaped as ``LSTMGenerator``'s, so that one's state dict loads;
    ``lstm_biases`` as that one's (1: bias_hh zero and frozen, the authors' one bias per
    gate)."""

    def __init__(self, vocab_size: int, seq_len: int, start_token: int = 0, core: str = "rmc",
                 emb_dim: int = 32, hidden_dim: int = 32, mem_slots: int = 1,
                 num_heads: int = 2, head_size: int = 16, lstm_biases: int = 2):
        super().__init__()
        self.constructor_args = dict(vocab_size=vocab_size, seq_len=seq_len,
                                     start_token=start_token, core=core, emb_dim=emb_dim,
                                     hidden_dim=hidden_dim, mem_slots=mem_slots,
                                     num_heads=num_heads, head_size=head_size,
                                     lstm_biases=lstm_biases)
        self.vocab_size, self.seq_len, self.start_token, self.core = (
            vocab_size, seq_len, start_token, core)
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        if core == "lstm":
            self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
            if lstm_biases == 1:  # as LSTMGenerator: the shared MLE run's zero bias_hh stays
                with torch.no_grad():
                    self.lstm.bias_hh_l0.zero_()
                self.lstm.bias_hh_l0.requires_grad_(False)
            features = hidden_dim
        else:
            self.memory = RelationalMemory(emb_dim, mem_slots, num_heads, head_size)
            features = mem_slots * self.memory.mem_size
        self.output = nn.Linear(features, vocab_size)

    def forward(self, inputs: torch.Tensor, state=None):
        """Logits [n, steps, vocab] for input tokens [n, steps], and the state after them."""
        embedded = self.embedding(inputs)
        if self.core == "lstm":
            hidden, state = self.lstm(embedded, state)
            return self.output(hidden), state
        if state is None:
            state = self.memory.initial_state(len(inputs), inputs.device)
        outputs = []
        for t in range(inputs.shape[1]):
            out, state = self.memory(embedded[:, t], state)
            outputs.append(out)
        return self.output(torch.stack(outputs, dim=1)), state

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self(self.shifted_inputs(tokens))[0]

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               chunk: int | None = None) -> torch.Tensor:
        """Ancestral sampling, step by step (small chunks keep the softmax in cache)."""
        rows_out, chunk = [], chunk or rows_per_step(self.device, 128)
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            token = torch.full((rows, 1), self.start_token, dtype=torch.long, device=self.device)
            state, steps = None, []
            for _ in range(self.seq_len):
                logits, state = self(token, state)
                token = sample_from_logits(logits[:, -1], temperature, generator)[0].unsqueeze(1)
                steps.append(token)
            rows_out.append(torch.cat(steps, dim=1))
        return torch.cat(rows_out)

    def sample_relaxed(self, n: int, beta: float, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [n, T], relaxed one-hots [n, T, vocab]) with gradients: y_t =
        argmax(o_t + g_t), its relaxation softmax(beta * (o_t + g_t)); the next step reads
        the embedding of y_t."""
        token = torch.full((n, 1), self.start_token, dtype=torch.long, device=self.device)
        state, tokens, relaxed = None, [], []
        for _ in range(self.seq_len):
            logits, state = self(token, state)
            perturbed = logits[:, -1] + gumbel_noise(logits[:, -1].shape, self.device, generator)
            token = perturbed.argmax(dim=-1, keepdim=True)
            tokens.append(token)
            relaxed.append(torch.softmax(beta * perturbed, dim=-1))
        return torch.cat(tokens, dim=1), torch.stack(relaxed, dim=1)


# --- the discriminator -------------------------------------------------------------------

class MultiRepDiscriminator(nn.Module):
    """R representations of the input through one CNN, one score each: [B, R].

    Each representation is d = emb_dim / R columns of the embedding (R embedding matrices
    of [vocab, d]); windows 2-5 slide over time with weights shared by the R
    representations (the authors' conv2d of width d and stride d); max over time, ReLU,
    one highway layer (gate bias 0; ``highway_bias=False``: no biases, as the authors'),
    dropout, a linear layer and the scalar score.
    Inputs are one-hot-like [B, T, vocab] (relaxed fakes) or token ids [B, T] (real).
    """

    def __init__(self, vocab_size: int, seq_len: int, emb_dim: int = 64, num_rep: int = 64,
                 filter_sizes: tuple[int, ...] = (2, 3, 4, 5), num_filters: int = 300,
                 hidden: int = 100, dropout: float = 0.25, highway_bias: bool = True):
        super().__init__()
        kept = tuple(k for k in filter_sizes if k <= seq_len) or (seq_len,)
        self.num_rep, self.rep_dim = num_rep, emb_dim // num_rep
        self.embedding = nn.Parameter(torch.empty(vocab_size, emb_dim))
        nn.init.normal_(self.embedding, 0.0, vocab_size ** -0.5)
        self.convs = nn.ModuleList(nn.Conv1d(self.rep_dim, num_filters, k) for k in kept)
        for conv, k in zip(self.convs, kept):  # the authors' He-normal for conv2d
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (k * self.rep_dim)))
        features = num_filters * len(kept)
        self.highway = adv.Highway(features, bias=highway_bias)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(features, hidden)
        self.score = nn.Linear(hidden, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, emb] for token ids [B, T] or one-hot-like [B, T, vocab]."""
        return F.embedding(x, self.embedding) if x.dtype == torch.long else x @ self.embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embed(x)
        batch, length, _ = emb.shape
        # [B, T, R, d] -> [B * R, d, T]: each representation a d-channel sequence.
        reps = emb.view(batch, length, self.num_rep, self.rep_dim).permute(0, 2, 3, 1)
        reps = reps.reshape(batch * self.num_rep, self.rep_dim, length)
        pooled = torch.cat([F.relu(conv(reps).amax(dim=2)) for conv in self.convs], dim=1)
        scores = self.score(self.hidden(self.dropout(self.highway(pooled))))
        return scores.view(batch, self.num_rep)


# --- training ----------------------------------------------------------------------------

def init_embedding_like_authors(embedding: torch.Tensor) -> None:
    """The authors' generator embedding g_emb [vocab, emb], in place: a normal of std
    1/sqrt(vocab) redrawn beyond 2 std (models/rmc_vanilla.py 14-15:
    create_linear_initializer(vocab_size), utils/ops.py 17-20: tf.truncated_normal_initializer
    with stddev 1 / sqrt(input_size))."""
    std = embedding.shape[0] ** -0.5
    nn.init.trunc_normal_(embedding, 0.0, std, -2.0 * std, 2.0 * std)


def new_relgan_generator(corpus: Corpus, cfg: RelGanConfig,
                         device: torch.device) -> RelGanGenerator:
    generator = RelGanGenerator(corpus.vocab_size, corpus.seq_len, corpus.start_token,
                                cfg.generator, cfg.emb_dim, cfg.hidden_dim, cfg.mem_slots,
                                cfg.num_heads, cfg.head_size, lstm_biases=cfg.lstm_biases)
    if cfg.emb_init == "authors" and cfg.generator == "rmc":  # the LSTM's: the MLE run's
        init_embedding_like_authors(generator.embedding.weight)
    return generator.to(device)


def pretrain(ctx: RunContext, cfg: RelGanConfig) -> RelGanGenerator:
    """MLE pre-training: the shared MLE run for the LSTM, its own run for the RMC."""
    generator = new_relgan_generator(ctx.corpus, cfg, ctx.device)
    settings = {"epochs": cfg.pretrain_epochs, "batch_size": cfg.batch_size,
                "lr": cfg.pretrain_lr, "grad_clip": cfg.grad_clip, "emb_dim": cfg.emb_dim,
                "hidden_dim": cfg.hidden_dim, "shuffle": cfg.shuffle,
                "eval_every": cfg.eval_every, "lstm_biases": cfg.lstm_biases}
    if cfg.generator == "lstm":
        generator.load_state_dict(ctx.start_from("mle", **settings).state_dict())
        return generator
    # the RMC's sizes are its own, and it has no LSTM
    del settings["emb_dim"], settings["hidden_dim"], settings["lstm_biases"]
    train_by_mle(ctx, generator, "mle", **settings)  # recorded as the shared run's phase
    return generator


class RelGan(Method):
    """RelGAN: MLE pre-training, then Gumbel-softmax adversarial training under RSGAN."""

    name = "relgan"
    best_so_far_phase = PHASE
    Config = RelGanConfig
    profiles = {"paper": PAPER, "authors": AUTHORS}
    # The LSTM variant starts from the MLE run's generator; the RMC variant pre-trains its
    # own, recorded under the same phase name so plots mark where pre-training ends.
    starts_from = ("mle",)
    published = (resources.files("harness_plugins") / "published" / "relgan2019.csv",)

    def train(self, ctx: RunContext) -> RelGanGenerator:
        cfg = ctx.config
        corpus = ctx.corpus
        if ctx.resume_phase == PHASE:
            generator = new_relgan_generator(corpus, cfg, ctx.device)
        else:
            generator = pretrain(ctx, cfg)
        disc = MultiRepDiscriminator(corpus.vocab_size, corpus.seq_len, cfg.disc_emb_dim,
                                     cfg.num_rep, num_filters=cfg.disc_filters,
                                     hidden=cfg.disc_hidden,
                                     highway_bias=cfg.highway_bias).to(ctx.device)
        g_opt = torch.optim.Adam(generator.parameters(), lr=cfg.adv_lr)
        d_opt = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr)
        noise = ctx.rng("gumbel_noise", ctx.device)
        real_rows = ctx.rng("real_batches")
        phase = ctx.phase(PHASE, cfg.adv_steps,
                          {"generator": generator, "discriminator": disc,
                           "generator_optimizer": g_opt, "disc_optimizer": d_opt,
                           "noise_rng": noise, "real_rng": real_rows},
                          unit="batch", record_every=cfg.adv_eval_every,
                          desc=f"relgan {corpus.name}")
        horizon = cfg.beta_horizon or cfg.adv_steps

        def real_batch() -> torch.Tensor:
            # Random rows (the authors' loader picks one of its fixed batches at random).
            rows = torch.randint(len(corpus.train), (cfg.batch_size,), generator=real_rows)
            return corpus.train[rows].to(ctx.device)

        def generator_loss(beta: float) -> torch.Tensor:
            # Differentiable end to end: D's score of the relaxed one-hots back into G.
            _, fake = generator.sample_relaxed(cfg.batch_size, beta, noise)
            return rsgan_losses(disc(real_batch()), disc(fake))[1]

        for step in phase:
            # Iteration n trains at beta_n (the authors' loop sets beta_n after iteration n,
            # so theirs trains at beta_{n-1}: the same schedule one step later).
            beta = inverse_temperature(step, cfg.beta_max, horizon, cfg.beta_schedule)
            generator.train()
            disc.train()
            for _ in range(cfg.g_steps):
                g_loss = train_step(generator_loss(beta), g_opt, "the generator loss",
                                    generator.parameters(), cfg.grad_clip)
            for _ in range(cfg.d_steps):
                with torch.no_grad():
                    _, fake = generator.sample_relaxed(cfg.batch_size, beta, noise)
                d_loss = train_step(rsgan_losses(disc(real_batch()), disc(fake))[0], d_opt,
                                    "the discriminator loss", disc.parameters(), cfg.grad_clip)
            extra = {"d_loss": d_loss} if cfg.d_steps else {}
            phase.record(generator, phase=PHASE, epoch=cfg.pretrain_epochs + step + 1,
                         g_loss=g_loss, beta=beta, **extra)
        return generator
