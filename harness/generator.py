"""The shared LSTM generator: embedding -> LSTM -> linear over the vocabulary.

Most methods train this very module, as in the paper (docs/commands.md, *Methods*, says
which); the synthetic oracle is one too, with the authors' weights.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from harness import hookimpl, store
from harness.api import Generator, HarnessError
from harness.config import require
from harness.devices import row_spans, rows_per_step
from harness.plugins import class_name, registry
from harness.uncertainty import token_nll_se

State = tuple[torch.Tensor, torch.Tensor]


def sample_from_logits(logits: torch.Tensor, temperature: float = 1.0,
                       generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row; return (tokens, their log-probabilities).

    Inverse-CDF sampling (one uniform per row, found in the cumulative unnormalised
    distribution) draws from the same distribution as ``torch.multinomial`` and is several
    times faster over a 5,000-word softmax on the CPU (``draw_inverse_cdf``).
    """
    if temperature != 1.0:
        logits = logits / temperature
    uniform = torch.rand(logits.shape[0], 1, device=logits.device, generator=generator)
    return draw_inverse_cdf(logits, uniform, None)


def draw_inverse_cdf(logits: torch.Tensor, uniform: torch.Tensor, buffer: torch.Tensor | None,
                     log_probs: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``sample_from_logits`` with its uniforms [rows, 1] given.

    Two passes over the logits (max, exp) and one vectorised sum; no full cumulative sum,
    which is a sequential chain per row and cost as much as the exp. The vocabulary is cut
    into blocks of about its square root: the uniform picks a block in the cumulative
    block sums, then a token in that block's own cumulative sum. Each step keeps the
    inverse CDF's rule (the first entry whose running sum exceeds the target), so a token
    of zero weight is never drawn.

    ``buffer``: where the exponentials go, a tensor of the logits' shape reused by the
    caller (a fresh [rows, vocab] tensor per step costs page faults; it may be ``logits``
    itself when ``log_probs`` is False). None: a new tensor, which is what a
    log-probability that carries gradients needs. ``log_probs=False`` leaves out the
    log-probabilities (None), which evaluation's samples do not need."""
    rows, vocab = logits.shape
    block = max(1, math.isqrt(vocab))
    blocks, whole = -(-vocab // block), vocab // block * block
    top = logits.amax(dim=-1, keepdim=True)
    weights = logits - top if buffer is None else torch.sub(logits, top, out=buffer)
    weights.exp_()
    # The block sums after a zero column: their running sum is [0, end of block 0, ...], so
    # the end before the chosen block is one gather (adding the 0 first changes no float).
    sums = [logits.new_zeros(rows, 1), weights[:, :whole].view(rows, -1, block).sum(-1)]
    if whole < vocab:  # the last, shorter block
        sums.append(weights[:, whole:].sum(-1, keepdim=True))
    ends = torch.cat(sums, 1).cumsum_(-1)
    total = ends[:, -1:]
    target = uniform * total
    # The first end past the target, counted from 1 (the leading 0 is never past it).
    after = torch.searchsorted(ends, target, right=True).clamp_max_(blocks)
    # The target's rest inside the block: never negative (the end before it is <= target).
    rest = target - ends.gather(1, after - 1)
    columns = torch.arange(-block, 0, device=logits.device).add(after, alpha=block)
    outside = columns >= vocab
    members = weights.gather(1, columns.clamp_max_(vocab - 1)).masked_fill_(outside, 0.0)
    within = torch.searchsorted(members.cumsum(-1), rest, right=True)
    # Where the search stops, the running sum grew, so that token has weight. Rounding can
    # leave the rest past the block's own sum: then the block's last token of weight.
    if int(within.max()) == block:
        last = torch.where(members > 0, torch.arange(block, device=logits.device), -1)
        within = torch.minimum(within, last.amax(-1, keepdim=True))
    tokens = columns.gather(1, within)
    if not log_probs:
        return tokens.squeeze(1), None
    return tokens.squeeze(1), (logits.gather(1, tokens) - top - total.log()).squeeze(1)


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """The block with ``model``'s dropout and the like switched off, its mode restored
    after it; anything not a ``torch.nn.Module`` is left as it is."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def mean_token_nll(scorer: Generator, tokens: torch.Tensor, batch: int | None = None,
                   temperature: float = 1.0) -> float:
    """Mean negative log-likelihood per token (nats) of ``tokens`` under ``scorer``.

    The mean adds the sums of batches of ``batch`` sequences one after another (16 on the
    CPU, as it always has: the batch sets the mean's floats, not how much work a call does,
    which is the scorer's ``likelihood_batches_per_call``).
    """
    return mean_token_nlls(scorer, tokens, (temperature,), batch)[0]


@torch.no_grad()
def mean_token_nlls(scorer: Generator, tokens: torch.Tensor,
                    temperatures: tuple[float, ...], batch: int | None = None) -> list[float]:
    """``mean_token_nll`` at each temperature, through ``scorer.log_likelihoods``, which may
    compute once per batch what the temperature does not change (it must give the figures of
    one ``log_likelihood`` call per temperature: tested for the harness's generators)."""
    return sequence_log_likelihoods(scorer, tokens, temperatures, batch)[0]


@torch.no_grad()
def sequence_log_likelihoods(scorer: Generator, tokens: torch.Tensor,
                             temperatures: tuple[float, ...], batch: int | None = None
                             ) -> tuple[list[float], list[np.ndarray]]:
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
    # A scorer that blocks its own work (``likelihood_batches_per_call``) takes several
    # batches per call; the sums stay those of one batch after another.
    per_call = batch * scorer.likelihood_batches_per_call
    for start in range(0, len(tokens), per_call):
        chunk = tokens[start:start + per_call].to(device)
        values = scorer.log_likelihoods(chunk, temperatures)
        for i, value in enumerate(values):
            for part in value.split(batch):
                totals[i] -= part.sum().item() if on_host else part.sum().double()
            rows[i].append(value)
    per_sequence = [torch.cat(r).double().cpu().numpy() if r else np.zeros(0) for r in rows]
    return [float(total) / tokens.numel() for total in totals], per_sequence


def mean_token_nll_and_se(scorer: Generator, tokens: torch.Tensor, temperature: float = 1.0
                          ) -> tuple[float, float]:
    """``mean_token_nll`` and its standard error over the sequences."""
    (mean,), (per_sequence,) = sequence_log_likelihoods(scorer, tokens, (temperature,))
    return mean, token_nll_se(per_sequence, tokens.shape[1])


class TeacherForced(nn.Module, Generator):
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


class Decoder(TeacherForced):
    """The decoding contract: a ``TeacherForced`` generator that also decodes one token at a
    time, which is all the rollout and the policy-gradient loop ask of a generator
    (``harness_plugins.adversarial``), and what ``sample`` here is written in.

    ``start_state(n)``: the state of ``n`` rows before any token; ``step(tokens, state)``:
    read one token per row (int64 [n]; the start token first) and return the logits of the
    next position [n, vocab] and the state after it; ``select_state(state, rows)``: the state
    of the rows ``rows`` (int64 [m]: rows picked and repeated, as the rollout expands each
    prefix into its completions). A state is the decoder's own (an LSTM's (h, c), a
    Transformer's key-value cache)."""

    def start_state(self, n: int) -> Any:
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def select_state(self, state: Any, rows: torch.Tensor) -> Any:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling by ``step``, one inverse-CDF draw a row and position."""
        token = torch.full((n,), self.start_token, dtype=torch.long, device=self.device)
        state, drawn = self.start_state(n), []
        for _ in range(self.seq_len):
            logits, state = self.step(token, state)
            token = sample_from_logits(logits, temperature, generator)[0]
            drawn.append(token)
        return torch.stack(drawn, dim=1) if drawn else \
            torch.empty(n, 0, dtype=torch.long, device=self.device)


def log_probs_of_tokens(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
                        ) -> torch.Tensor:
    """log-softmax(logits / temperature) at ``tokens``: [n, seq_len]."""
    if temperature != 1.0:  # x / 1.0 == x exactly; skipping it saves a third of the time
        logits = logits / temperature
    nll = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none")
    return -nll.view_as(tokens)


def _log_softmax_at(logits: torch.Tensor, targets: torch.Tensor, temperature: float,
                    scaled: torch.Tensor, log_softmax: torch.Tensor) -> torch.Tensor:
    """``log_probs_of_tokens`` of flat logits [rows, vocab] at ``targets`` [rows, 1], with
    the scaled logits and the log-softmax written into the buffers given."""
    if temperature != 1.0:
        logits = torch.div(logits, temperature, out=scaled[:len(logits)])
    return torch.log_softmax(logits, 1, out=log_softmax[:len(logits)]).gather(1, targets)


# LSTMGenerator's ``lstm_biases``, the biases per gate: 2 as ``nn.LSTM`` (bias_ih and
# bias_hh, both trained), 1 as the authors' LSTM (bias_hh zero and frozen).
LSTM_BIASES = (1, 2)


def require_lstm_biases(config: Any) -> None:
    """A Config's check of its ``lstm_biases`` (ValueError naming the field)."""
    require(config, choices={"lstm_biases": LSTM_BIASES})


class LSTMGenerator(Decoder):
    """embedding -> one-layer LSTM -> linear over the vocabulary.

    ``lstm_biases``: 2, ``nn.LSTM`` as it is, a bias_ih and a bias_hh per gate, both trained
    (the effective gate bias is their sum: drawn from N(0, 0.1) each, it has twice the
    variance of one, and Adam moves it at twice the rate). 1, the authors' LSTM (LantaoYu/
    SeqGAN @4152436, MLE_SeqGAN/model.py ``create_recurrent_unit``, lines 142-200: i, f, o
    = sigmoid(x W + h U + b), c~ = tanh(x W_c + h U_c + b_c), c = f c + i c~, h = o tanh(c),
    one b per gate from ``init_matrix``, N(0, 0.1)): bias_hh is zero and frozen
    (``requires_grad`` False), so bias_ih is the one trained bias per gate. The output layer
    is the authors' either way (``create_output_unit``: logits = h W_o + b_o, one bias)."""

    def __init__(self, vocab_size: int, seq_len: int, emb_dim: int = 32,
                 hidden_dim: int = 32, start_token: int = 0, init_std: float | None = 0.1,
                 lstm_biases: int = 2):
        super().__init__()
        if lstm_biases not in LSTM_BIASES or isinstance(lstm_biases, bool):
            raise ValueError(f"lstm_biases must be 1 or 2, not {lstm_biases!r}")
        self.constructor_args = dict(vocab_size=vocab_size, seq_len=seq_len, emb_dim=emb_dim,
                                     hidden_dim=hidden_dim, start_token=start_token,
                                     init_std=None,  # the state dict sets every weight
                                     lstm_biases=lstm_biases)
        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.lstm_biases = lstm_biases
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim, vocab_size)
        if init_std is not None:
            # The authors initialise every weight from N(0, 0.1); PyTorch's default
            # initialisation trains markedly worse on the oracle (9.3 instead of 9.0).
            for p in self.parameters():
                nn.init.normal_(p, 0.0, init_std)
        if lstm_biases == 1:
            # Zeroed after the draws above, which bias_hh takes its share of as before: every
            # other weight is the very one lstm_biases=2 draws from the same random state,
            # and bias_ih (the one bias left) is the N(0, init_std) draw it always was. The
            # authors' TensorFlow draws (one random_normal per variable) cannot be matched
            # draw for draw in torch; what matches is their law: every weight, and the one
            # bias per gate, from N(0, 0.1).
            with torch.no_grad():
                self.lstm.bias_hh_l0.zero_()
            self.lstm.bias_hh_l0.requires_grad_(False)
            self.register_load_state_dict_post_hook(_check_no_hidden_bias)

    @staticmethod
    def parameter_count(vocab_size: int, emb_dim: int, hidden_dim: int) -> int:
        """The weights of a generator of these sizes, counted on the meta device (built
        without memory, however large the sizes). A frozen bias_hh (``lstm_biases=1``) is
        counted too: it is held in memory all the same (4 * hidden_dim floats)."""
        shapes = _shapes_only(LSTMGenerator, {"vocab_size": vocab_size, "seq_len": 1,
                                              "emb_dim": emb_dim, "hidden_dim": hidden_dim})
        return sum(tensor.numel() for tensor in shapes.values())

    def forward(self, inputs: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """Logits [n, steps, vocab] for a batch of input tokens, and the final state."""
        hidden, state = self.lstm(self.embedding(inputs), state)
        return self.output(hidden), state

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self(self.shifted_inputs(tokens))[0]

    # The decoding contract (``Decoder``): the state is nn.LSTM's (h, c), [1, n, hidden]
    # each; None before the first token (nn.LSTM's zeros). ``sample`` and the rollout keep
    # the LSTM's own faster paths (plugins/adversarial.py ``Rollout``).
    def start_state(self, n: int) -> State | None:
        return None

    def step(self, tokens: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        logits, state = self(tokens[:, None], state)
        # squeeze, not [:, 0]: its backward is a view, where indexing's fills a zero tensor
        # of the step's logits and copies the gradient in (scheduled sampling steps so).
        return logits.squeeze(1), state

    def select_state(self, state: State | None, rows: torch.Tensor) -> State | None:
        return None if state is None else (state[0][:, rows], state[1][:, rows])

    # ``sequence_log_likelihoods`` may hand this many of its batches to one call: the LSTM
    # runs once over them all, the logits are made LIKELIHOOD_ROWS rows at a time.
    likelihood_batches_per_call = 32
    LIKELIHOOD_ROWS = 32  # chosen by measurement (benchmarks/bench_rows.py); no float changes

    def log_likelihoods(self, tokens: torch.Tensor, temperatures: tuple[float, ...]
                        ) -> list[torch.Tensor]:
        """``log_likelihood`` at each temperature (the very floats of
        ``TeacherForced.log_likelihoods``: rows are independent in every step), with the
        logits and log-softmax of ``LIKELIHOOD_ROWS`` rows at a time in reused buffers,
        which cost no page faults. With gradients on, the differentiable pass."""
        if torch.is_grad_enabled() or not len(tokens):
            return super().log_likelihoods(tokens, temperatures)
        hidden = self.lstm(self.embedding(self.shifted_inputs(tokens)))[0]
        block = rows_per_step(self.device, self.LIKELIHOOD_ROWS)
        buffers = [torch.empty(min(block, len(tokens)) * self.seq_len, self.vocab_size,
                               device=self.device) for _ in range(3)]
        values = [torch.empty(len(tokens), device=self.device) for _ in temperatures]
        for start in range(0, len(tokens), block):
            rows = slice(start, start + block)
            logits = self._block_logits(hidden[rows], buffers[0])
            targets = tokens[rows].reshape(-1, 1)
            for value, temperature in zip(values, temperatures):
                log_p = _log_softmax_at(logits, targets, temperature, *buffers[1:])
                value[rows] = log_p.view(-1, self.seq_len).sum(dim=1)
        return values

    def _block_logits(self, hidden: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        """``self.output`` of [rows, steps, hidden] as [rows * steps, vocab], into ``buffer``."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        return torch.addmm(self.output.bias, flat, self.output.weight.t(), out=buffer[:len(flat)])

    # Rows a sampling step projects and draws at once on the CPU: chosen by measurement
    # (benchmarks/bench_rows.py); it changes no float (``row_spans``).
    SAMPLE_ROWS = 2048

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               return_log_probs: bool = False, chunk: int | None = None):
        """Ancestral sampling, step by step, carrying the LSTM state (h, c) forward.

        Every step runs the LSTM once over all ``n`` rows (a one-step LSTM call costs about
        as much for 128 rows as for thousands), then projects and draws about
        ``SAMPLE_ROWS`` rows at a time into reused buffers (a GPU takes them all at once:
        ``rows_per_step``). The uniforms are drawn in the order of one ``chunk`` of rows
        after another, each step by step, so the tokens depend on ``chunk`` as they always
        have, and on nothing else: not on how many rows a step projects at once
        (``row_spans``).
        """
        chunk = chunk or rows_per_step(self.device, 128)
        uniforms = self._uniforms(n, chunk, generator)
        spans = row_spans(n, chunk, rows_per_step(self.device, self.SAMPLE_ROWS))
        tokens = torch.empty(n, self.seq_len, dtype=torch.long, device=self.device)
        log_probs = torch.empty(n, self.seq_len, device=self.device) if return_log_probs else None
        logits = torch.empty(max((s.stop - s.start for s in spans), default=0), self.vocab_size,
                             device=self.device)
        cdf = torch.empty_like(logits)
        token = torch.full((n, 1), self.start_token, dtype=torch.long, device=self.device)
        state = None
        for t in range(self.seq_len):
            hidden, state = self.lstm(self.embedding(token), state)
            for rows in spans:
                drawn, log_p = self._draw(hidden[rows, 0], uniforms[rows, t:t + 1], temperature,
                                          logits, cdf, return_log_probs)
                tokens[rows, t] = drawn
                if return_log_probs:
                    log_probs[rows, t] = log_p
            token = tokens[:, t:t + 1]
        return (tokens, log_probs) if return_log_probs else tokens

    def _draw(self, hidden: torch.Tensor, uniform: torch.Tensor, temperature: float,
              logits: torch.Tensor, cdf: torch.Tensor, log_probs: bool):
        """One step's tokens for these rows, the logits projected into the buffer ``logits``
        (``addmm``: the very floats of ``self.output``)."""
        rows = len(hidden)
        logits = torch.addmm(self.output.bias, hidden, self.output.weight.t(), out=logits[:rows])
        if temperature != 1.0:
            logits.div_(temperature)
        return draw_inverse_cdf(logits, uniform, cdf[:rows], log_probs)

    def _uniforms(self, n: int, chunk: int, generator: torch.Generator | None) -> torch.Tensor:
        """[n, seq_len] uniforms, drawn as the chunk-by-chunk sampler always drew them: for
        each chunk of rows, one ``torch.rand(rows, 1)`` per step."""
        draws = [torch.stack([torch.rand(min(chunk, n - start), device=self.device,
                                         generator=generator) for _ in range(self.seq_len)], 1)
                 for start in range(0, n, chunk)]
        return torch.cat(draws) if draws else torch.empty(0, self.seq_len, device=self.device)


def _check_no_hidden_bias(module: "LSTMGenerator", incompatible_keys: Any) -> None:
    """After a state dict loads into a generator with ``lstm_biases=1``: its bias_hh must be
    zero (weights of a two-bias generator would make it one silently)."""
    bias = module.lstm.bias_hh_l0
    if not bias.is_meta and bool(bias.detach().ne(0).any()):
        raise HarnessError("these weights have a nonzero LSTM bias_hh, but the generator has "
                           "lstm_biases=1 (bias_hh zero and frozen): they are a two-bias "
                           "generator's (lstm_biases=2)")


# --- saved generators: a state dict plus the constructor's arguments -----------------

FORMAT = "harness-generator/1"


@hookimpl
def register_generators(register):
    register(LSTMGenerator)


def save_generator(path: Path, generator: nn.Module) -> None:
    """Write ``generator`` as its class name, constructor arguments and state dict.

    A generator class that can be saved sets ``self.constructor_args`` (plain values) in
    its ``__init__`` and is registered (``register_generators``); nothing is pickled."""
    store.write_torch(path, {"format": FORMAT, "class": class_name(type(generator)),
                             "args": generator.constructor_args,
                             "state_dict": generator.state_dict()})


def load_generator(path: Path, device: torch.device | str = "cpu", corpus=None) -> nn.Module:
    """A generator saved by ``save_generator``, read as tensors only (``weights_only``).

    Only a registered generator class is built, and only after its constructor arguments
    are checked: their types against the constructor's signature, the sizes against
    ``corpus`` (when given), and the shapes the arguments make (built on the meta device,
    which allocates nothing) against the saved tensors."""
    fix = "re-run the run to write it again"
    saved = store.read_torch(path, fix)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or \
            not isinstance(saved.get("args"), dict) or not isinstance(saved.get("state_dict"), dict):
        raise HarnessError(f"{path} is not a saved harness generator (a state dict and its "
                           f"constructor arguments); {fix}")
    kind = _registered_class(saved.get("class"), path)
    _check_arguments(kind, saved["args"], path, corpus)
    shapes = {name: tuple(t.shape) for name, t in _shapes_only(kind, saved["args"]).items()}
    found = {name: tuple(t.shape) for name, t in saved["state_dict"].items()
             if isinstance(t, torch.Tensor)}
    if shapes != found:
        raise HarnessError(f"{path}: the saved weights do not have the shapes its constructor "
                           f"arguments make; {fix}")
    generator = kind(**saved["args"])
    generator.load_state_dict(saved["state_dict"])
    return generator.to(device).eval()


class _NoInitialisation(TorchFunctionMode):
    """In-place operations on meta tensors (``normal_``, ``zero_``: initialisers) left
    undone: there is nothing to fill, and torch's meta ``normal_`` alone imports its
    compiler (two seconds)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if name.endswith("_") and not name.startswith("_") and target is not None and target.is_meta:
            return target
        return func(*args, **kwargs)


def _shapes_only(kind: type, args: dict) -> dict:
    """The state dict ``kind(**args)`` would have, built on the meta device: shapes without
    memory, however large the arguments."""
    with torch.device("meta"), _NoInitialisation():
        return kind(**args).state_dict()


def _registered_class(name: Any, path: Path) -> type:
    known = registry().generators
    if name not in known:
        raise HarnessError(f"{path}: generator class {str(name)[:100]!r} is not one the harness "
                           f"or an installed plugin registers; refusing to load it")
    return known[name]


# Constructor arguments a data set fixes: a generator of another vocabulary or length
# cannot score or show this data set's sequences.
CORPUS_SIZES = {"vocab_size": "vocab_size", "seq_len": "seq_len", "start_token": "start_token"}


def _check_arguments(kind: type, args: dict, path: Path, corpus) -> None:
    """Every argument a parameter of ``kind``'s constructor, of its annotated type."""
    hints = typing.get_type_hints(kind.__init__)
    parameters = inspect.signature(kind.__init__).parameters
    for name, value in args.items():
        if name not in parameters or name == "self":
            raise HarnessError(f"{path}: {kind.__qualname__} takes no argument {name!r}")
        if name in hints and not _is_instance(value, hints[name]):
            raise HarnessError(f"{path}: {kind.__qualname__} argument {name}={value!r} is not "
                               f"of type {hints[name]}")
        if corpus is not None and name in CORPUS_SIZES and \
                value != getattr(corpus, CORPUS_SIZES[name]):
            raise HarnessError(f"{path}: {name}={value!r}, but the data set {corpus.name} has "
                               f"{getattr(corpus, CORPUS_SIZES[name])}")


def _is_instance(value: Any, hint: Any) -> bool:
    """``isinstance`` for the plain types of constructor arguments: int, float, bool, str,
    None, unions of them, and lists or tuples of them."""
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, option) for option in typing.get_args(hint))
    if origin in (list, tuple):
        inner = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(
            any(_is_instance(item, option) for option in inner) if inner else True
            for item in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)
