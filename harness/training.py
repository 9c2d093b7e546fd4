"""Training pieces every method may use: one optimisation step and one teacher-forced
epoch of the shared generator (phases, checkpoints and resuming: harness.phases)."""
from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

from harness.api import Corpus, RunContext, check_finite
from harness.config import require
from harness.generator import Decoder, LSTMGenerator, TeacherForced, require_lstm_biases
from harness.phases import rng_states, set_rng_states  # noqa: F401 (the plugins' import)

ARCHITECTURES = ("lstm", "transformer")  # GeneratorSettings.architecture


@dataclass
class GeneratorSettings:
    """Which generator a method that trains the shared one trains, and the Transformer's
    sizes (the LSTM's are each config's ``emb_dim`` and ``hidden_dim``): the base of those
    methods' configs, so ``--set architecture=transformer`` reaches every one of them."""

    architecture: str = "lstm"  # "lstm" (harness.generator.LSTMGenerator) or "transformer"
                                # (harness.transformer.TransformerGenerator)
    layers: int = 2             # the Transformer's blocks
    heads: int = 2              # its attention heads (d_model a multiple of them)
    d_model: int = 64           # its width
    d_ff: int = 128             # its feed-forward width
    dropout: float = 0.0        # its dropout, in training only


# The holder of those settings for ``config.check_settings``: every run accepts them (a
# method with a generator of its own keeps it, and its run says so).
SHARED_GENERATOR = types.SimpleNamespace(name="the shared generator", Config=GeneratorSettings)


def require_generator_settings(config: Any) -> None:
    """A Config's check of its generator settings (ValueError naming the field)."""
    require_lstm_biases(config)
    require(config, choices={"architecture": ARCHITECTURES}, fractions=("dropout",),
            at_least_one=("layers", "heads", "d_model", "d_ff"))
    if config.d_model % config.heads:
        raise ValueError(f"d_model ({config.d_model}) must be a multiple of heads ({config.heads})")


OWN_GENERATOR = "its own"  # a method's architecture when it trains a generator of its own


def architecture_of(method: Any, config: dict) -> str:
    """What a run of ``method`` (a registered Method, or None) with this recorded ``config``
    (its Config as a dict) trained: its ``architecture``, "lstm" for a run recorded before
    the setting existed, ``OWN_GENERATOR`` for a method without the setting (LeakGAN's
    manager-worker, RelGAN's relational memory, the VAE) or not installed here."""
    if "architecture" in config:
        return str(config["architecture"])
    return "lstm" if method is not None and takes_architecture(method) else OWN_GENERATOR


def takes_architecture(method: Any) -> bool:
    """Whether ``method`` trains the shared generator of any architecture (its Config is a
    ``GeneratorSettings``), rather than a generator of its own."""
    return isinstance(getattr(method, "Config", None), type) and \
        issubclass(method.Config, GeneratorSettings)


def generator_settings(config: Any) -> dict[str, Any]:
    """The ``GeneratorSettings`` fields of ``config``, to pass on (to the MLE run it starts from)."""
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(GeneratorSettings)}


def build_generator(corpus: Corpus, config: Any, device: torch.device) -> Decoder:
    """The shared generator ``config`` asks for (its ``architecture``), freshly drawn."""
    if config.architecture == "transformer":
        from harness.transformer import TransformerGenerator

        return TransformerGenerator(corpus.vocab_size, corpus.seq_len, corpus.start_token,
                                    config.layers, config.heads, config.d_model, config.d_ff,
                                    config.dropout).to(device)
    return new_generator(corpus, config.emb_dim, config.hidden_dim, device, config.lstm_biases)


def new_generator(corpus: Corpus, emb_dim: int, hidden_dim: int,
                  device: torch.device, lstm_biases: int = 2) -> LSTMGenerator:
    """The shared LSTM generator for ``corpus``, freshly drawn (``lstm_biases``: see
    ``LSTMGenerator``; 1 as the authors' LSTM, the same draws as 2 but bias_hh zeroed)."""
    return LSTMGenerator(corpus.vocab_size, corpus.seq_len, emb_dim, hidden_dim,
                         start_token=corpus.start_token, lstm_biases=lstm_biases).to(device)


def train_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, what: str,
               parameters: Iterable[torch.Tensor] | None = None,
               grad_clip: float | None = None) -> float:
    """One update: check the loss is finite (else ``Diverged`` naming ``what``), back-
    propagate, clip the gradient norm of ``parameters`` to ``grad_clip``, step."""
    value = loss.item()
    check_finite(value, what)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()
    return value


def epoch_order(rows: int, batch_size: int, shuffle: bool,
                rng: torch.Generator | None = None) -> torch.Tensor:
    """The rows one epoch reads, in order: a permutation of all of them from ``rng`` (the
    global stream without one) when shuffling; otherwise the file in order in whole batches,
    as the authors' loaders walk it (``int(rows / batch_size)`` batches, the rest left out:
    LantaoYu/SeqGAN MLE_SeqGAN/gen_dataloader.py 19-21 @4152436, and its copies in RankGAN's,
    LeakGAN's and RelGAN's code). A set smaller than one batch is one batch."""
    if shuffle:
        return torch.randperm(rows, generator=rng)
    return torch.arange(max(rows // batch_size * batch_size, min(rows, batch_size)))


def mle_epoch(generator: TeacherForced, data: torch.Tensor, optimizer: torch.optim.Optimizer,
              batch_size: int, grad_clip: float, rng: torch.Generator | None) -> float:
    """One teacher-forced pass over ``data``, shuffled from ``rng`` or, without one, the
    file in order (``epoch_order``); mean token NLL. Any ``TeacherForced`` generator: it
    reads only ``teacher_forced_logits``, ``device`` and the parameters."""
    generator.train()
    order = epoch_order(len(data), batch_size, rng is not None, rng)
    total, tokens = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = data[order[start:start + batch_size]].to(generator.device)
        logits = generator.teacher_forced_logits(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.flatten())
        total += train_step(loss, optimizer, "the MLE loss", generator.parameters(),
                            grad_clip) * batch.numel()
        tokens += batch.numel()
    return total / tokens


def batch_order_stream(phase: str) -> str:
    """The name of the random stream ``train_by_mle`` shuffles the phase ``phase`` with."""
    return f"{phase}: batch order"


def train_by_mle(ctx: RunContext, generator: torch.nn.Module, phase: str, *, epochs: int,
                 batch_size: int, lr: float, grad_clip: float, shuffle: bool, eval_every: int,
                 at_curve_point: Callable[[int], None] | None = None) -> None:
    """MLE-train ``generator`` in place in the phase ``phase``, Adam at ``lr``, checkpointed
    every epoch: a curve point before the first epoch and every ``eval_every`` epochs,
    each followed by ``at_curve_point(epoch)``."""
    optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
    # A part of every checkpoint, drawn from only when shuffling.
    shuffle_rng = ctx.rng(batch_order_stream(phase)) if shuffle else torch.Generator()
    epochs_phase = ctx.phase(phase, epochs, {"generator": generator, "optimizer": optimizer,
                                             "shuffle_rng": shuffle_rng},
                             record_every=eval_every)
    if not epochs_phase.resumed:
        ctx.record(generator, phase=phase, epoch=0)
    for epoch in epochs_phase:
        loss = mle_epoch(generator, ctx.corpus.train, optimizer, batch_size, grad_clip,
                         shuffle_rng if shuffle else None)
        if epochs_phase.record(generator, phase=phase, epoch=epoch + 1, train_nll=loss) \
                and at_curve_point is not None:
            at_curve_point(epoch + 1)
