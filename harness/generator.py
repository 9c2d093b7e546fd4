"""The shared LSTM generator: embedding -> LSTM -> linear over the vocabulary.

MLE, scheduled sampling, PG-BLEU and SeqGAN all train this very module, as in the
paper; the synthetic oracle is one too, with the authors' weights.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import store
from harness.api import HarnessError
from harness.devices import rows_per_step
from harness.uncertainty import token_nll_se

State = tuple[torch.Tensor, torch.Tensor]


def sample_from_logits(logits: torch.Tensor, temperature: float = 1.0,
                       generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row; return (tokens, their log-probabilities).

    Inverse-CDF sampling (one uniform per row, searched in the cumulative unnormalised
    distribution) draws from the same distribution as ``torch.multinomial`` and is several
    times faster over a 5,000-word softmax on the CPU; three passes over the logits (max,
    exp, cumsum), the log-probability of the drawn token from the same sums.
    """
    if temperature != 1.0:
        logits = logits / temperature
    top = logits.amax(dim=-1, keepdim=True)
    cdf = (logits - top).exp_().cumsum_(dim=-1)
    total = cdf[:, -1:]
    u = torch.rand(cdf.shape[0], 1, device=cdf.device, generator=generator) * total
    tokens = torch.searchsorted(cdf, u, right=True).clamp_max_(cdf.shape[1] - 1)
    return tokens.squeeze(1), (logits.gather(1, tokens) - top - total.log()).squeeze(1)


@torch.no_grad()
def mean_token_nll(scorer, tokens: torch.Tensor, batch: int | None = None,
                   temperature: float = 1.0) -> float:
    """Mean negative log-likelihood per token (nats) of ``tokens`` under ``scorer`` (any
    generator with ``log_likelihood``).

    Batches of 16 keep the [batch, length, vocab] logits in cache: 2x faster than 64 on the
    2-core CPU (a 5,000-word vocabulary, length 20).
    """
    return mean_token_nlls(scorer, tokens, (temperature,), batch)[0]


@torch.no_grad()
def mean_token_nlls(scorer, tokens: torch.Tensor, temperatures: tuple[float, ...],
                    batch: int | None = None) -> list[float]:
    """``mean_token_nll`` at each temperature. A scorer with ``log_likelihoods`` computes
    what does not depend on the temperature once per batch; it must give the figures of one
    ``log_likelihood`` call per temperature (tested for the harness's generators)."""
    return sequence_log_likelihoods(scorer, tokens, temperatures, batch)[0]


@torch.no_grad()
def sequence_log_likelihoods(scorer, tokens: torch.Tensor, temperatures: tuple[float, ...],
                             batch: int | None = None) -> tuple[list[float], list[np.ndarray]]:
    """``mean_token_nlls`` and, per temperature, every sequence's log-likelihood (float64
    [n]), for standard errors. On the CPU the means are the batches' sums accumulated one
    by one in Python floats, the very floats ``mean_token_nlls`` has always given; on a GPU
    the sums stay on the device and are read once (no host sync per batch)."""
    device = next(scorer.parameters()).device if isinstance(scorer, nn.Module) else torch.device("cpu")
    batch = batch or rows_per_step(device, 16)
    on_host = device.type == "cpu"
    totals = [0.0 if on_host else torch.zeros((), dtype=torch.float64, device=device)
              for _ in temperatures]
    rows: list[list[torch.Tensor]] = [[] for _ in temperatures]
    for start in range(0, len(tokens), batch):
        chunk = tokens[start:start + batch].to(device)
        if hasattr(scorer, "log_likelihoods"):
            values = scorer.log_likelihoods(chunk, temperatures)
        else:
            values = [scorer.log_likelihood(chunk, temperature=t) for t in temperatures]
        for i, value in enumerate(values):
            totals[i] -= value.sum().item() if on_host else value.sum().double()
            rows[i].append(value)
    per_sequence = [torch.cat(r).double().cpu().numpy() if r else np.zeros(0) for r in rows]
    return [float(total) / tokens.numel() for total in totals], per_sequence


def mean_token_nll_and_se(scorer, tokens: torch.Tensor, temperature: float = 1.0
                          ) -> tuple[float, float]:
    """``mean_token_nll`` and its standard error over the sequences."""
    (mean,), (per_sequence,) = sequence_log_likelihoods(scorer, tokens, (temperature,))
    return mean, token_nll_se(per_sequence, tokens.shape[1])


class TeacherForced(nn.Module):
    """What every generator that predicts token by token shares: teacher-forced
    log-likelihoods from its ``teacher_forced_logits`` (the logits [n, seq_len, vocab] that
    produce ``tokens`` with every earlier token given)."""

    start_token: int

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def shifted_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """The inputs that produce ``tokens`` under teacher forcing: start token, then y_1..y_{T-1}."""
        start = tokens.new_full((tokens.shape[0], 1), self.start_token)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def token_log_probs(self, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """log G(y_t | y_<t) for every position, teacher-forced: shape [n, seq_len]."""
        return log_probs_of_tokens(self.teacher_forced_logits(tokens), tokens, temperature)

    def log_likelihood(self, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return self.token_log_probs(tokens, temperature).sum(dim=1)

    def log_likelihoods(self, tokens: torch.Tensor, temperatures: tuple[float, ...]
                        ) -> list[torch.Tensor]:
        """``log_likelihood`` at each temperature, from one teacher-forced pass."""
        logits = self.teacher_forced_logits(tokens)
        return [log_probs_of_tokens(logits, tokens, t).sum(dim=1) for t in temperatures]


def log_probs_of_tokens(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
                        ) -> torch.Tensor:
    """log-softmax(logits / temperature) at ``tokens``: [n, seq_len]."""
    if temperature != 1.0:  # x / 1.0 == x exactly; skipping it saves a third of the time
        logits = logits / temperature
    nll = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none")
    return -nll.view_as(tokens)


class LSTMGenerator(TeacherForced):
    def __init__(self, vocab_size: int, seq_len: int, emb_dim: int = 32,
                 hidden_dim: int = 32, start_token: int = 0, init_std: float | None = 0.1):
        super().__init__()
        self.constructor_args = dict(vocab_size=vocab_size, seq_len=seq_len, emb_dim=emb_dim,
                                     hidden_dim=hidden_dim, start_token=start_token,
                                     init_std=None)  # the state dict sets every weight
        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim, vocab_size)
        if init_std is not None:
            # The authors initialise every weight from N(0, 0.1); PyTorch's default
            # initialisation trains markedly worse on the oracle (9.3 instead of 9.0).
            for p in self.parameters():
                nn.init.normal_(p, 0.0, init_std)

    @staticmethod
    def parameter_count(vocab_size: int, emb_dim: int, hidden_dim: int) -> int:
        """The weights of a generator of these sizes, counted without building it: the
        embedding, the LSTM's four gates (input and hidden weights, two biases each), the
        output layer."""
        lstm = 4 * hidden_dim * (emb_dim + hidden_dim) + 8 * hidden_dim
        return vocab_size * emb_dim + lstm + hidden_dim * vocab_size + vocab_size

    def forward(self, inputs: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """Logits [n, steps, vocab] for a batch of input tokens, and the final state."""
        hidden, state = self.lstm(self.embedding(inputs), state)
        return self.output(hidden), state

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self(self.shifted_inputs(tokens))[0]

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               return_log_probs: bool = False, chunk: int | None = None):
        """Ancestral sampling, step by step, carrying the LSTM state (h, c) forward.

        Small chunks keep the [chunk, vocab] softmax in cache: 2-3x faster on a CPU (a GPU
        takes them all at once: ``rows_per_step``).
        """
        tokens, log_probs, chunk = [], [], chunk or rows_per_step(self.device, 128)
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            token = torch.full((rows, 1), self.start_token, dtype=torch.long, device=self.device)
            state, steps, step_log_probs = None, [], []
            for _ in range(self.seq_len):
                logits, state = self(token, state)
                drawn, log_p = sample_from_logits(logits[:, -1], temperature, generator)
                token = drawn.unsqueeze(1)
                steps.append(drawn)
                step_log_probs.append(log_p)
            tokens.append(torch.stack(steps, dim=1))
            log_probs.append(torch.stack(step_log_probs, dim=1))
        tokens = torch.cat(tokens)
        return (tokens, torch.cat(log_probs)) if return_log_probs else tokens


# --- saved generators: a state dict plus the constructor's arguments -----------------

FORMAT = "harness-generator/1"
# A saved generator's class must live in one of these packages (or in a plugin's), so a
# results directory received from someone else cannot name arbitrary code to run.
TRUSTED_PACKAGES = ("harness", "harness_plugins", "harness_datasets")


def save_generator(path: Path, generator: nn.Module) -> None:
    """Write ``generator`` as its class name, constructor arguments and state dict.

    A generator class that can be saved sets ``self.constructor_args`` (plain values) in
    its ``__init__``; nothing is pickled."""
    kind = type(generator)
    store.write_torch(path, {"format": FORMAT, "class": f"{kind.__module__}:{kind.__qualname__}",
                             "args": generator.constructor_args,
                             "state_dict": generator.state_dict()})


def load_generator(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """A generator saved by ``save_generator``, read as tensors only (``weights_only``)."""
    saved = store.read_torch(path)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise HarnessError(f"{path} is not a saved harness generator (a state dict and its "
                           f"constructor arguments); re-run the run to write one")
    generator = _trusted_class(saved["class"], path)(**saved["args"])
    generator.load_state_dict(saved["state_dict"])
    return generator.to(device).eval()


def _trusted_class(name: str, path: Path) -> type:
    from harness.plugins import plugin_manager

    module, _, qualname = name.partition(":")
    plugins = {plugin.__name__.split(".")[0] for plugin in plugin_manager().get_plugins()
               if hasattr(plugin, "__name__")}
    if module.split(".")[0] not in set(TRUSTED_PACKAGES) | plugins:
        raise HarnessError(f"{path}: generator class {name} is not from the harness or an "
                           f"installed plugin; refusing to load it")
    kind = importlib.import_module(module)
    for part in qualname.split("."):
        kind = getattr(kind, part)
    if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
        raise HarnessError(f"{path}: {name} is not a generator module")
    return kind
