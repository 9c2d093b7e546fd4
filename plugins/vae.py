"""Text VAE: a variational auto-encoder over whole sequences (Bowman et al. 2016).

embedding -> highway layers -> bidirectional LSTM encoder -> mu, log sigma^2 -> z ->
LSTM decoder that sees z joined to every input embedding (and, optionally, z sets its
initial state). Trained on reconstruction NLL + beta * KL(q(z|x) || N(0, I)) with KL
annealing, word dropout and free bits against posterior collapse.

A VAE has no exact likelihood: ``log_likelihood`` is the importance-weighted lower bound
IWAE_K (Burda et al. 2016), so the harness's NLL-test for it is an upper bound on the true
NLL; the generator says so with ``likelihood_is_bound = True``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import click

from harness import Generator, Method, hookimpl, store
from harness.api import Corpus, HarnessError, RunContext
from harness.config import require
from harness.devices import rows_per_step
from harness.generator import State, load_generator, log_probs_of_tokens, sample_from_logits
from harness.training import train_step

# log_likelihood and elbo draw z from a fixed seed of their own, so an evaluation gives
# the same figure every time and leaves the training random streams alone.
EVAL_Z_SEED = 2016
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: z_d is active if Cov_x(E_q[z_d]) > 0.01
KL_SCHEDULES = ("logistic", "linear", "none")
LOG_2PI = math.log(2 * math.pi)


@hookimpl
def register_methods(register):
    register(Vae())


@hookimpl
def register_generators(register):
    register(VaeGenerator)


@dataclass
class VaeConfig:
    epochs: int = 8               # passes over the training set: MLE's 8 (at 3, NLL-test on
                                  # Obama still fell 0.26 nats in the last epoch)
    batch_size: int = 64          # sequences per update
    lr: float = 5e-3              # Adam; at 1e-3, NLL-oracle is 10.1 after 5 epochs (9.8 at 5e-3)
    grad_clip: float = 5.0        # gradient-norm clip (the loss is per token, as for the LSTMs)
    emb_dim: int = 64             # token embedding, shared by encoder and decoder
    hidden_dim: int = 128         # LSTM units: encoder (each direction) and decoder
    latent_dim: int = 32          # dimensions of z
    highway_layers: int = 2       # highway layers between the embedding and the encoder
    z_init_state: bool = True     # z also sets the decoder's initial state (not only its inputs)
    kl_anneal: str = "logistic"   # beta from 0 to 1: logistic, linear, or none (always 1)
    kl_anneal_steps: int = 400    # updates until beta reaches 1 (about 2.5 epochs on the oracle)
    word_dropout: float = 0.3     # share of decoder inputs replaced by a dedicated <drop> token
    free_bits: float = 0.1        # per-dimension KL floor lambda (nats), 0: off; without it the
                                  # oracle's active units fall from 32 to 8 in 10 epochs
    iw_samples: int = 5           # K of the IWAE bound that log_likelihood (NLL-test) reports
    active_units_batch: int = 1000  # training sequences the per-epoch diagnostics are measured on

    def __post_init__(self):
        require(self, positive=("grad_clip",), fractions=("word_dropout",),
                choices={"kl_anneal": KL_SCHEDULES},
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "latent_dim",
                              "kl_anneal_steps", "iw_samples", "active_units_batch"))


class Highway(nn.Module):
    """y = g * relu(W x) + (1 - g) * x, with gate g = sigmoid(W_g x) (Srivastava et al. 2015)."""

    def __init__(self, dim: int):
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)
        nn.init.constant_(self.gate.bias, -2.0)  # start close to the identity: easier to train

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(x))
        return gate * F.relu(self.transform(x)) + (1 - gate) * x


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per dimension, in nats: shape of ``mu``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z.pow(2) + LOG_2PI).sum(dim=-1)


class VaeGenerator(nn.Module, Generator):
    """The trained VAE, as the harness sees it: sample from the prior, score with IWAE_K."""

    likelihood_is_bound = True  # log_likelihood is a lower bound: NLL-test is an upper bound

    def __init__(self, vocab_size: int, seq_len: int, start_token: int = 0, emb_dim: int = 64,
                 hidden_dim: int = 128, latent_dim: int = 32, highway_layers: int = 2,
                 z_init_state: bool = True, iw_samples: int = 10):
        super().__init__()
        self.constructor_args = dict(
            vocab_size=vocab_size, seq_len=seq_len, start_token=start_token, emb_dim=emb_dim,
            hidden_dim=hidden_dim, latent_dim=latent_dim, highway_layers=highway_layers,
            z_init_state=z_init_state, iw_samples=iw_samples)
        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.iw_samples = iw_samples
        # Word dropout's <drop> token is an extra embedding row, not a corpus token: the
        # decoder never emits it and no corpus token (the oracle's start token 0 is an
        # ordinary word) changes meaning.
        self.drop_token = vocab_size
        self.embedding = nn.Embedding(vocab_size + 1, emb_dim)
        self.highway = nn.Sequential(*(Highway(emb_dim) for _ in range(highway_layers)))
        self.encoder = nn.LSTM(emb_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.to_mu = nn.Linear(2 * hidden_dim, latent_dim)
        self.to_logvar = nn.Linear(2 * hidden_dim, latent_dim)
        self.to_state = nn.Linear(latent_dim, 2 * hidden_dim) if z_init_state else None
        self.decoder = nn.LSTM(emb_dim + latent_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim, vocab_size)

    @property
    def device(self) -> torch.device:
        return self.output.weight.device

    @property
    def latent_dim(self) -> int:
        return self.to_mu.out_features

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x) = N(mu, diag(exp(logvar))) of each sequence: [n, latent] twice."""
        _, (h, _) = self.encoder(self.highway(self.embedding(tokens)))
        summary = torch.cat([h[0], h[1]], dim=1)  # the last forward and backward states
        return self.to_mu(summary), self.to_logvar(summary)

    def initial_state(self, z: torch.Tensor) -> State | None:
        if self.to_state is None:
            return None
        h, c = self.to_state(z).chunk(2, dim=1)
        return torch.tanh(h).unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()

    def forward(self, inputs: torch.Tensor, z: torch.Tensor, state: State | None
                ) -> tuple[torch.Tensor, State]:
        """Decoder logits [n, steps, vocab] for input tokens [n, steps], z joined to each input."""
        embedded = self.embedding(inputs)
        latent = z.unsqueeze(1).expand(-1, inputs.shape[1], -1)
        hidden, state = self.decoder(torch.cat([embedded, latent], dim=2), state)
        return self.output(hidden), state

    def shifted_inputs(self, tokens: torch.Tensor, word_dropout: float = 0.0) -> torch.Tensor:
        """Teacher-forced decoder inputs: the start token, then y_1..y_{T-1}, a share
        ``word_dropout`` of the latter replaced by <drop> so the decoder must lean on z."""
        start = tokens.new_full((tokens.shape[0], 1), self.start_token)
        previous = tokens[:, :-1]
        if word_dropout > 0:
            dropped = torch.rand(previous.shape, device=previous.device) < word_dropout
            previous = previous.masked_fill(dropped, self.drop_token)
        return torch.cat([start, previous], dim=1)

    def token_log_probs(self, tokens: torch.Tensor, z: torch.Tensor, temperature: float = 1.0,
                        word_dropout: float = 0.0) -> torch.Tensor:
        """log p(y_t | y_<t, z) for every position, teacher-forced: [n, seq_len]."""
        logits, _ = self(self.shifted_inputs(tokens, word_dropout), z, self.initial_state(z))
        return log_probs_of_tokens(logits, tokens, temperature)

    def decode(self, z: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None, greedy: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences for latent codes z, one step at a time carrying the decoder state:
        (tokens [n, seq_len], the log-probability of each token drawn)."""
        token = torch.full((len(z), 1), self.start_token, dtype=torch.long, device=z.device)
        state, steps, step_log_probs = self.initial_state(z), [], []
        for _ in range(self.seq_len):
            logits, state = self(token, z, state)
            if greedy:
                log_probs = F.log_softmax(logits[:, -1] / temperature, dim=-1)
                log_p, drawn = log_probs.max(dim=-1)
            else:
                drawn, log_p = sample_from_logits(logits[:, -1], temperature, generator)
            token = drawn.unsqueeze(1)
            steps.append(drawn)
            step_log_probs.append(log_p)
        return torch.stack(steps, dim=1), torch.stack(step_log_probs, dim=1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               chunk: int | None = None) -> torch.Tensor:
        """z ~ N(0, I), then ancestral decoding; small chunks keep the softmax in cache."""
        samples, chunk = [], chunk or rows_per_step(self.device, 128)
        for start in range(0, n, chunk):
            z = torch.randn(min(chunk, n - start), self.latent_dim, device=self.device,
                            generator=generator)
            samples.append(self.decode(z, temperature, generator)[0])
        return torch.cat(samples)

    def _eval_generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(EVAL_Z_SEED)

    @torch.no_grad()
    def log_likelihood(self, tokens: torch.Tensor, temperature: float = 1.0,
                       samples: int | None = None) -> torch.Tensor:
        """IWAE_K <= log p(x) per sequence (nats), K = ``samples`` or ``iw_samples``, with
        the encoder as proposal; repeatable: z is drawn from a fixed seed."""
        return self.log_likelihoods(tokens, (temperature,), samples)[0]

    @torch.no_grad()
    def log_likelihoods(self, tokens: torch.Tensor, temperatures: tuple[float, ...],
                        samples: int | None = None) -> list[torch.Tensor]:
        """``log_likelihood`` at each temperature: the same z and one decoder pass per z
        serve every temperature (only the softmax depends on it)."""
        samples = samples or self.iw_samples
        rng = self._eval_generator()
        mu, logvar = self.encode(tokens)
        std = (0.5 * logvar).exp()
        log_weights = [[] for _ in temperatures]
        for _ in range(samples):  # one z per sequence at a time: [n, T, vocab] logits at most
            eps = torch.randn(mu.shape, device=mu.device, generator=rng)
            z = mu + std * eps
            log_q = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(dim=1)
            logits, _ = self(self.shifted_inputs(tokens), z, self.initial_state(z))
            log_prior = standard_normal_log_density(z)
            for weights, t in zip(log_weights, temperatures):
                log_p = log_probs_of_tokens(logits, tokens, t).sum(dim=1)
                weights.append(log_p + log_prior - log_q)
        return [torch.logsumexp(torch.stack(w), dim=0) - math.log(samples) for w in log_weights]

    @torch.no_grad()
    def elbo(self, tokens: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """E_q[log p(x|z)] - KL(q(z|x) || p(z)) per sequence (nats); the expectation is
        estimated with ``samples`` draws from a fixed seed, the KL is exact."""
        return self.elbo_given_posterior(tokens, *self.encode(tokens), samples)

    @torch.no_grad()
    def elbo_given_posterior(self, tokens: torch.Tensor, mu: torch.Tensor,
                             logvar: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """``elbo`` for a posterior the caller has already encoded."""
        rng = self._eval_generator()
        std = (0.5 * logvar).exp()
        reconstruction = sum(
            self.token_log_probs(tokens, mu + std * torch.randn(
                mu.shape, device=mu.device, generator=rng)).sum(dim=1)
            for _ in range(samples)) / samples
        return reconstruction - gaussian_kl(mu, logvar).sum(dim=1)

    @torch.no_grad()
    def interpolate(self, tokens_a: torch.Tensor, tokens_b: torch.Tensor,
                    steps: int) -> torch.Tensor:
        """Greedy decodings [steps, seq_len] along the line between two sequences'
        posterior means, from ``tokens_a`` to ``tokens_b``."""
        pair = torch.stack([tokens_a.reshape(-1), tokens_b.reshape(-1)]).to(self.device)
        mu, _ = self.encode(pair)
        weights = torch.linspace(0, 1, steps, device=self.device).unsqueeze(1)
        return self.decode((1 - weights) * mu[0] + weights * mu[1], greedy=True)[0]


def new_model(corpus: Corpus, cfg: VaeConfig, device: torch.device) -> VaeGenerator:
    return VaeGenerator(corpus.vocab_size, corpus.seq_len, corpus.start_token, cfg.emb_dim,
                        cfg.hidden_dim, cfg.latent_dim, cfg.highway_layers, cfg.z_init_state,
                        cfg.iw_samples).to(device)


def kl_weight(step: int, schedule: str, anneal_steps: int) -> float:
    """beta after ``step`` updates: from 0 to 1 over ``anneal_steps`` (Bowman et al. 2016),
    then 1. Logistic: 1 / (1 + exp(-10 (step / anneal_steps - 1/2)))."""
    if schedule not in KL_SCHEDULES:
        raise HarnessError(f"kl_anneal={schedule}: choose one of {', '.join(KL_SCHEDULES)}")
    if schedule == "none" or step >= anneal_steps:
        return 1.0
    progress = step / anneal_steps
    if schedule == "linear":
        return progress
    return 1.0 / (1.0 + math.exp(-10.0 * (progress - 0.5)))


def kl_penalty(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """sum_d max(lambda, batch-mean KL_d): a dimension's first ``free_bits`` nats cost
    nothing, so the encoder can use them before the decoder learns to ignore z
    (Kingma et al. 2016)."""
    return kl_per_dim.mean(dim=0).clamp(min=free_bits).sum()


def active_units(mu: torch.Tensor) -> int:
    """Dimensions whose posterior mean varies across sequences: Var_x(E_q[z_d]) > 0.01."""
    return int((mu.var(dim=0) > ACTIVE_UNIT_THRESHOLD).sum())


@torch.no_grad()
def diagnostics(model: VaeGenerator, tokens: torch.Tensor, batch: int = 64) -> dict:
    """Per-sequence reconstruction NLL, KL and bound (-ELBO, nats), and active units, on
    ``tokens``, without word dropout. Batches of 64 keep the logits small (5,000 words)."""
    mus, kls, bounds = [], [], []
    for chunk in tokens.split(batch):
        chunk = chunk.to(model.device)
        mu, logvar = model.encode(chunk)  # once: the KL and the bound share it
        mus.append(mu)
        kls.append(gaussian_kl(mu, logvar).sum(dim=1))
        bounds.append(-model.elbo_given_posterior(chunk, mu, logvar))
    kl, bound = torch.cat(kls).mean().item(), torch.cat(bounds).mean().item()
    return {"recon_nll": bound - kl, "kl": kl, "bound": bound,
            "active_units": active_units(torch.cat(mus))}


def vae_epoch(model: VaeGenerator, data: torch.Tensor, optimizer: torch.optim.Optimizer,
              cfg: VaeConfig, rng: torch.Generator, step: int) -> tuple[float, int]:
    """One shuffled pass over ``data``; the mean training loss per token and the step reached."""
    model.train()
    order = torch.randperm(len(data), generator=rng)
    total = 0.0
    for start in range(0, len(data), cfg.batch_size):
        batch = data[order[start:start + cfg.batch_size]].to(model.device)
        mu, logvar = model.encode(batch)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)  # reparameterised
        recon = -model.token_log_probs(batch, z, word_dropout=cfg.word_dropout).sum(dim=1)
        beta = kl_weight(step, cfg.kl_anneal, cfg.kl_anneal_steps)
        penalty = kl_penalty(gaussian_kl(mu, logvar), cfg.free_bits)
        # Per token, so grad_clip and lr mean what they mean for the LSTM methods.
        loss = (recon.mean() + beta * penalty) / batch.shape[1]
        total += train_step(loss, optimizer, "the VAE loss", model.parameters(),
                            cfg.grad_clip) * len(batch)
        step += 1
    return total / len(data), step


class Vae(Method):
    name = "vae"
    Config = VaeConfig
    profiles = {"paper": {"epochs": 40, "emb_dim": 128, "hidden_dim": 256, "latent_dim": 64,
                          "kl_anneal_steps": 5000, "iw_samples": 50}}

    def train(self, ctx: RunContext) -> VaeGenerator:
        cfg = ctx.config
        kl_weight(0, cfg.kl_anneal, cfg.kl_anneal_steps)  # a bad schedule name fails now
        model = new_model(ctx.corpus, cfg, ctx.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        shuffle_rng = ctx.rng("vae_shuffle")
        probe = ctx.corpus.train[:cfg.active_units_batch]
        phase = ctx.phase("train", cfg.epochs, {"model": model, "optimizer": optimizer,
                                                "shuffle_rng": shuffle_rng},
                          desc=f"vae {ctx.corpus.name}")
        if not phase.resumed:
            self._record(ctx, model, probe, epoch=0, step=0)
        # Updates so far (for the KL schedule): every epoch makes the same number.
        per_epoch = -(-len(ctx.corpus.train) // cfg.batch_size)
        for epoch in phase:  # a curve point every epoch
            loss, step = vae_epoch(model, ctx.corpus.train, optimizer, cfg, shuffle_rng,
                                   epoch * per_epoch)
            self._record(ctx, model, probe, epoch=epoch + 1, step=step, train_loss=loss)
        if ctx.curve and ctx.curve[-1].get("active_units") == 0:
            ctx.log.warning("vae on %s: the posterior collapsed (0 of %d active units): the "
                            "decoder ignores z; try more word_dropout, free_bits or a longer "
                            "kl_anneal_steps", ctx.corpus.name, cfg.latent_dim)
        return model

    @staticmethod
    def _record(ctx: RunContext, model: VaeGenerator, probe: torch.Tensor, *, epoch: int,
                step: int, **values) -> None:
        """A curve point: the harness's metric, the diagnostics on ``probe``, beta."""
        cfg = ctx.config
        measured = diagnostics(model, probe)
        ctx.record(model, phase="vae", epoch=epoch, **values, **measured,
                   beta=kl_weight(step, cfg.kl_anneal, cfg.kl_anneal_steps),
                   collapsed=measured["active_units"] == 0)


@hookimpl
def register_commands(cli):
    from harness.commands import finished_run, run_corpus, run_options, user_errors
    from harness.download import MIRROR_ENV

    @cli.command()
    @run_options(method="vae")
    @click.option("--steps", default=5, show_default=True, help="Points along each line.")
    @click.option("--pairs", default=2, show_default=True, help="Pairs of held-out sequences.")
    @click.option("--data-mirror", envvar=MIRROR_ENV, help="Local copy of the corpora.")
    @user_errors
    def interpolate(method, dataset, seed, run_id, results, steps, pairs, data_mirror) -> None:
        """Decode along the latent line between held-out sequences (a VAE's run)."""
        run_dir = finished_run(results, method, dataset, seed, run_id)
        corpus = run_corpus(run_dir, data_mirror)
        generator = load_generator(run_dir / store.GENERATOR, corpus=corpus)
        for number, line in enumerate(interpolations(generator, corpus, steps, pairs, seed), 1):
            click.echo(f"--- pair {number}: held-out A -> B")
            click.echo("\n\n".join(line))


def interpolations(generator, corpus: Corpus, steps: int, pairs: int,
                   seed: int = 0) -> list[list[str]]:
    """Decodings along the latent line between random pairs of held-out sequences."""
    if not hasattr(generator, "interpolate"):
        raise HarnessError("this method's generator has no latent space to interpolate in")
    rng = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(corpus.test), generator=rng)[:2 * pairs].view(-1, 2)
    generator.eval()
    with torch.no_grad():
        return [corpus.show(generator.interpolate(corpus.test[a], corpus.test[b], steps).cpu())
                for a, b in picks.tolist()]
