"""What plugins see: data sets, corpora, methods, generators and the run context."""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch

from harness import store
from harness.streams import stream, stream_seed
from harness.phases import Phase, rng_states, set_rng_states
from harness.errors import Diverged, HarnessError, Interrupted, StorageError  # noqa: F401


def check_finite(value: float | torch.Tensor, what: str) -> None:
    """Raise Diverged unless ``value`` (a number or a tensor) is finite everywhere."""
    if isinstance(value, torch.Tensor):
        if not bool(torch.isfinite(value).all()):
            raise Diverged(f"{what} holds NaN or infinite values")
    elif not math.isfinite(value):
        raise Diverged(f"{what} is {value}")


@dataclass(eq=False)  # hashed by identity: per-corpus caches key on it
class Corpus:
    """A loaded data set: fixed-length token-id sequences split into train and test.

    ``oracle`` is set for synthetic data: the generator that made the data, used
    for NLL-oracle. ``vocab`` maps ids to strings for real text.
    """

    name: str
    train: torch.Tensor              # [n_train, seq_len] int64
    test: torch.Tensor               # [n_test, seq_len] int64
    vocab_size: int
    start_token: int = 0             # fed as the first input; may also be emitted
    oracle: Any = None               # a Generator scoring samples (synthetic data only)
    vocab: list[str] | None = None
    eval_samples: int = 10_000       # samples drawn from a generator to evaluate it
    end_token: int | None = None     # text: a sentence ends at its first end token
    info: dict = field(default_factory=dict)  # provenance, split, what a table should say
    format: Callable[[list[int]], str] | None = None  # one sequence as a person reads it
    # What the user must be told about this data (a stand-in for the paper's set): printed
    # once by the command that plans the runs, not by every process that loads it.
    warning: str = ""

    @property
    def seq_len(self) -> int:
        return self.train.shape[1]

    def sentences(self, tokens: torch.Tensor) -> list[list[int]]:
        """Token-id lists for BLEU: cut at the first end token, padding dropped."""
        rows = tokens.tolist()
        if self.end_token is None:
            return rows
        return [row[:row.index(self.end_token)] if self.end_token in row else row for row in rows]

    def show(self, tokens: torch.Tensor) -> list[str]:
        """Sequences as text a person can read."""
        if self.format is not None:
            return [self.format(row) for row in tokens.tolist()]
        if self.vocab is not None:
            return [" ".join(self.vocab[t] for t in row) for row in self.sentences(tokens)]
        return [" ".join(map(str, row)) for row in tokens.tolist()]

    def to(self, device: torch.device) -> "Corpus":
        if self.oracle is not None:
            self.oracle.to(device)
        return self


@dataclass
class Dataset:
    """A registered data set: how to load it, and what the tables and plots show of it."""

    name: str
    load: Callable[..., Corpus]      # load(profile=..., seed=..., mirror=...) -> Corpus
    description: str = ""
    headline: tuple[str, ...] = ()   # the metrics a table leads with (default: the curve metric)
    diversity: str = "self_bleu4"    # the diversity axis of quality-diversity charts
    baseline: str | None = None      # the row every other is tested against (table --baseline)
    published: tuple[Traversable, ...] = ()  # CSV files of published figures (see table.py)
    lower_is_better: tuple[str, ...] = ()  # the data set's own metrics where lower is better
    argument: str | None = None      # e.g. "PATH": the data set is named NAME:PATH (load(argument=))
    Config: type | None = None       # its settings (a dataclass; --set), given as load(config=)
    # The default profile's method settings on this data set, e.g. more epochs where an
    # epoch is short (applied like --set under that profile only; --set overrides them).
    method_settings: dict[str, Any] = field(default_factory=dict)
    # What decides whether a published figure compares with ours on this data set, e.g.
    # {"oracle": "seqgan-target-params"}: matched against the figures' ``conditions``.
    conditions: dict[str, str] = field(default_factory=dict)
    # Whether ``run --all`` trains on it; False for a data set that exists to compare with
    # one published figure (named with -d, it runs like any other).
    in_all: bool = True


class Generator:
    """What every method returns: something to sample from and to score with. A mixin that
    sits beside ``torch.nn.Module`` (``class MyGenerator(nn.Module, harness.Generator)``):
    ``sample`` and ``log_likelihood`` are a generator's own; every other member has a
    default the harness reads where the generator does not override it."""

    # True where ``log_likelihood`` is a lower bound (the VAE's IWAE): NLL-test is marked a bound.
    likelihood_is_bound: bool = False
    # How many of ``sequence_log_likelihoods``' batches one ``log_likelihoods`` call may take:
    # a generator that blocks its own work runs once over several (the sums stay per batch).
    likelihood_batches_per_call: int = 1
    # Plain values that rebuild it, set in ``__init__``: the run then saves it as a state dict
    # plus these (``generator.pt``), loaded without pickle; None: it is not saved.
    constructor_args: dict[str, Any] | None = None

    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` sequences as an int64 tensor [n, seq_len], drawn from ``generator``."""
        raise NotImplementedError

    def log_likelihood(self, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Per-sequence log-likelihood (nats, summed over tokens), shape [n]; a generator
        without one raises NotImplementedError, and its NLL-test is NaN."""
        raise NotImplementedError

    def log_likelihoods(self, tokens: torch.Tensor, temperatures: tuple[float, ...]
                        ) -> list[torch.Tensor]:
        """``log_likelihood`` at each temperature (the sweep): an override computes once what
        the temperature does not change, and must give the very same values."""
        return [self.log_likelihood(tokens, temperature=t) for t in temperatures]

    def samples_outside(self, split: str, n: int, generator: torch.Generator
                        ) -> torch.Tensor | None:
        """``n`` sequences from outside ``split`` to score against it instead of the samples
        (the ``real`` row: real text not used as references); None: score the samples."""
        return None


class Method:
    """A training method: subclass it, set ``name`` and ``Config``, write ``train`` and
    register an instance in a ``register_methods`` hook. The other members are optional."""

    name: str  # what ``-m`` calls it
    Config: type  # its settings: a dataclass whose defaults are the default (CPU) profile
    profiles: dict[str, dict[str, Any]] = {}  # other profiles: overrides of those defaults
    # Methods whose result it starts from: executors run those first, plots mark that phase.
    starts_from: tuple[str, ...] = ()
    reference: str | None = None  # "ceiling" or "floor" for the rows that frame a table
    # The phase of its curve (the rows' ``phase``) whose best point is its ``*_best_so_far``
    # metrics, as its authors kept the best inside that phase; None: no best-so-far.
    best_so_far_phase: str | None = None
    published: tuple[Traversable, ...] = ()  # CSV files of its paper's figures (harness/table.py)

    def conditions(self, config: dict) -> dict[str, str]:
        """What a run with these settings (its Config as a dict) was made under, where that
        decides whether a published figure compares with its rows (harness/table.py)."""
        return {}

    def supports(self, dataset: str) -> bool:
        """Whether it trains on the data set named ``dataset``; ``run --all`` skips the rest."""
        return True

    def train(self, ctx: "RunContext") -> Generator:
        """Train on ``ctx.corpus`` with ``ctx.config`` and return the trained generator."""
        raise NotImplementedError

    def start(self, ctx: "RunContext", **settings: Any) -> Generator:
        """What another method's ``ctx.start_from(name, **settings)`` starts from: by
        default ``train`` in that run with ``Config(**settings)``, in its own phases, the
        global random state left as it was. A method whose result many runs share (MLE)
        overrides it to train once and reuse."""
        states = rng_states()
        with ctx.configured(self.Config(**settings)):
            generator = self.train(ctx)
        set_rng_states(states)
        return generator


def trained_generator(method: Method, generator: Any) -> Generator:
    """What ``method.train`` returned, checked to be a ``Generator``."""
    if not isinstance(generator, Generator):
        raise HarnessError(f"method {method.name} returned {type(generator).__name__}, not a "
                           f"generator: its generator class must subclass harness.Generator")
    return generator


class RunContext:
    """Everything one (method, data set, seed) run needs, and where it reports to."""

    def __init__(self, *, corpus: Corpus, config: Any, device: torch.device, seed: int,
                 profile: str, run_dir: Path, evaluate_curve: Callable[[Generator, int | None], dict],
                 log: logging.Logger, show_progress: bool = True, shared_dir: Path | None = None,
                 stop_requested: Callable[[], bool] = lambda: False,
                 on_record: list[Callable[[dict], None]] | None = None, precision: str = "fp32",
                 methods: Mapping[str, Method] | None = None, fresh_curve_draws: bool = False):
        self.corpus = corpus
        self.config = config
        self.device = device
        self.precision = precision  # fp32, or on CUDA the tf32/bf16 asked for (harness.devices)
        self.seed = seed
        self.profile = profile
        self.run_dir = Path(run_dir)
        self.log = log
        self.curve: list[dict] = []
        self.notes: list[str] = []  # what a table should say beside this run's row
        # Work shared between runs of one data set and seed (e.g. MLE pre-training).
        self.shared_dir = Path(shared_dir) if shared_dir else self.run_dir / "shared"
        self._evaluate_curve = evaluate_curve
        self._show_progress = show_progress
        self._stop_requested = stop_requested
        self._on_record = on_record or []  # experiment trackers (--log-to)
        self._methods = methods or {}  # the registered methods, for start_from
        # Whether every curve point draws samples of its own (evaluate.FRESH_CURVE_DRAWS).
        self.fresh_curve_draws = fresh_curve_draws
        self.rngs: dict[str, int] = {}  # every named random stream and its seed, for config.json
        self.shared_files: dict[str, str] = {}  # shared file -> sha256, for config.json
        self._resume_point: dict | None = None
        self._resume_point_read = False

    def rng(self, name: str, device: torch.device | str | None = None) -> torch.Generator:
        """The method's random stream ``name`` on ``device`` (default: the CPU), its seed
        derived from the run's seed and the name (``harness.environment.stream_seed``) and
        listed in config.json. A name gives the same stream each time it is asked for."""
        self.rngs[name] = stream_seed(self.seed, name)
        return stream(self.seed, name, device)

    @contextlib.contextmanager
    def seeded(self, name: str) -> Iterator[None]:
        """The global (CPU) random state seeded for the stream ``name`` inside the block and
        left as it was after it: a net built inside is the same whatever ran before."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stream_seed(self.seed, name))
            self.rngs[name] = stream_seed(self.seed, name)
            yield

    def start_from(self, method: str, **settings: Any) -> "Generator":
        """The generator a run of ``method`` with ``settings`` (the rest its defaults)
        produces on this run's data and seed, to start from: trained here, or reused when
        another run trained it (``method.start``)."""
        if method not in self._methods:
            raise HarnessError(f"cannot start from {method!r}: no such method is registered")
        return self._methods[method].start(self, **settings)

    @contextlib.contextmanager
    def configured(self, config: Any) -> Iterator[None]:
        """``config`` as the run's settings for the block (another method's, started from)."""
        own, self.config = self.config, config
        try:
            yield
        finally:
            self.config = own

    def note(self, text: str) -> None:
        """A sentence the table prints under this method's rows (e.g. what a row is)."""
        if text not in self.notes:
            self.notes.append(text)

    def progress(self, iterable: Iterable | None = None, total: int | None = None,
                 desc: str = ""):
        """A progress bar with ETA (tqdm), silent when progress is switched off."""
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True,
                    disable=not self._show_progress)

    def record(self, generator: Generator | None = None, **values: Any) -> dict:
        """Append a learning-curve point; with a generator, the harness adds its own
        curve metrics (NLL-oracle on synthetic data, NLL-test otherwise): on samples of the
        point's own, named by its 0-based number, where every point draws fresh ones (else
        the evaluation's stream, ``point`` None)."""
        row = dict(values)
        if generator is not None:
            point = len(self.curve) if self.fresh_curve_draws else None
            row.update(self._evaluate_curve(generator, point))
        self.curve.append(row)
        store.write_csv(self.run_dir / store.CURVE, self.curve)
        for listener in self._on_record:
            listener(row)
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in row.items())
        self.log.info("curve: %s", shown)
        return row

    def write_shared(self, path: Path, obj: Any) -> None:
        """Keep ``obj`` in a shared file (under ``shared_dir``) for the runs that reuse it,
        with its sha256, which this run's config.json records."""
        self.shared_files[self._shared_name(path)] = store.write_shared(path, obj)

    def read_shared(self, path: Path) -> Any:
        """A shared file another run made, after checking its sha256 (HarnessError naming a
        tampered or damaged one); config.json records the digest."""
        obj, self.shared_files[self._shared_name(path)] = store.read_shared(path)
        return obj

    def _shared_name(self, path: Path) -> str:
        path = Path(path)
        return str(path.relative_to(self.shared_dir)) if path.is_relative_to(self.shared_dir) \
            else path.name

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / store.CHECKPOINT

    def phase(self, name: str, steps: int, parts: dict[str, Any], *, record_every: int = 1,
              unit: str = "epoch", desc: str | None = None) -> Phase:
        """A training phase of ``steps`` steps (``unit``: epoch, batch, round...): iterate
        it for the step numbers. It checkpoints ``parts`` (modules, optimisers, random
        streams) after every step, resumes them when the run's checkpoint holds this
        phase, and ``phase.record(...)`` records a curve point every ``record_every``
        steps and after the last."""
        return Phase(self, name, steps, parts, record_every=record_every, unit=unit, desc=desc)

    def save_checkpoint(self, state: dict) -> None:
        """Save the training state (model, optimiser, RNG, position) atomically (phases do
        it after every step); after SIGINT/SIGTERM the run stops here."""
        self.resume_point  # read before it is overwritten: what this run resumed from
        store.write_torch(self.checkpoint_path, {"state": state, "curve": self.curve,
                                                 "notes": self.notes, **self.made_on})
        if self._stop_requested():
            raise Interrupted(f"stopped by a signal; checkpoint saved in {self.checkpoint_path}")

    @property
    def made_on(self) -> dict:
        """The device kind and precision this run computes with (checkpoints record them)."""
        return {"device": self.device.type, "precision": self.precision}

    @property
    def snapshot_key(self) -> dict:
        """What decides a shared snapshot's contents besides the settings that made it: the
        device kind and precision, and fresh curve draws where they are on (its curve rows
        were evaluated on their samples)."""
        return {**self.made_on, **({"curve_samples": "fresh"} if self.fresh_curve_draws else {})}

    @property
    def resume_point(self) -> dict | None:
        """The training state this run resumes from (its checkpoint as the run found it),
        or None for a fresh start. Loaded onto the CPU as tensors and plain values only (a
        checkpoint cannot run code); modules and optimisers move their tensors in
        ``load_state_dict``."""
        if not self._resume_point_read:
            self._resume_point_read = True
            if self.checkpoint_path.exists():
                saved = read_checkpoint(self.checkpoint_path)
                refuse_other_device(saved, self.checkpoint_path, self.made_on)
                self._resume_point = saved
        return self._resume_point["state"] if self._resume_point else None

    @property
    def resume_phase(self) -> str | None:
        """The phase the run's checkpoint holds (None: a fresh start), for a method with
        several phases to skip the ones that came before it."""
        return self.resume_point["phase"] if self.resume_point else None

    def restore_curve(self) -> None:
        """The curve and notes as they were when the resume point was saved (by the phase
        that resumes from it)."""
        self.curve = list(self._resume_point["curve"])
        self.notes = list(self._resume_point.get("notes", []))


def read_checkpoint(path: Path) -> dict:
    """A run's checkpoint.pt, checked to be one (tensors and plain values, the parts every
    checkpoint has, of the right types); HarnessError naming the file otherwise."""
    fix = "delete it to start the run over"
    saved = store.read_torch(path, fix)
    problem = _checkpoint_problem(saved)
    if problem:
        raise HarnessError(f"{path} is not a valid checkpoint ({problem}); {fix}")
    return saved


def _checkpoint_problem(saved: Any) -> str:
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        return "no training state"
    if not isinstance(saved.get("curve"), list) or \
            not all(isinstance(row, dict) for row in saved["curve"]):
        return "its learning curve is not a list of rows"
    if not all(isinstance(note, str) for note in saved.get("notes", [])):
        return "its notes are not text"
    if not all(isinstance(saved.get(key, ""), str) for key in ("device", "precision")):
        return "its device is not a name"
    if not isinstance(saved["state"].get("phase"), str):
        return "no phase name"
    return ""


def refuse_other_device(checkpoint: dict, path: Path, made_on: dict) -> None:
    """HarnessError when ``checkpoint`` (read from ``path``) was saved on another kind of
    device or in another precision than ``made_on`` (``RunContext.made_on``): its random
    streams and numbers would not continue this run's."""
    then = {"device": checkpoint.get("device", "cpu"),
            "precision": checkpoint.get("precision", "fp32")}
    if then != made_on:
        raise HarnessError(
            f"{path} was saved on {then['device']} ({then['precision']}); this run is on "
            f"{made_on['device']} ({made_on['precision']}): resume it with --device "
            f"{then['device']}" + (f" --precision {then['precision']}"
                                   if then['precision'] != "fp32" else "")
            + ", or delete the checkpoint to start over")
