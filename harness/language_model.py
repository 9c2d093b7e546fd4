"""LM score and reverse LM score (Zhao et al. 2018; Cífka et al. 2018): language models the
harness trains itself to judge a generator's samples.

- ``lm_score``: the samples' NLL per token under an LM trained on the training split
  (quality: would a model of the real data write this?). Trained once per data set and
  seed, kept in the results' shared directory.
- ``reverse_lm_score``: the held-out split's NLL per token under an LM trained on the
  samples (quality and coverage: do the samples hold what real text holds?).

Both LMs are the shared LSTM generator, fitted by MLE with early stopping on a held-out
part of their training data; lower is better for both.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from harness import store
from harness.api import Corpus, HarnessError
from harness.generator import LSTMGenerator, mean_token_nll, mean_token_nll_and_se
from harness.streams import SCHEME, stream, stream_seed
from harness.training import mle_epoch

# A judge LM's random streams, derived from the seed it is fitted under (harness.streams).
WEIGHTS_STREAM = "judge LM: initial weights"
ORDER_STREAM = "judge LM: batch order"
STREAMS = (WEIGHTS_STREAM, ORDER_STREAM)


@dataclass(frozen=True)
class LmSettings:
    emb_dim: int = 32
    hidden_dim: int = 64
    lr: float = 0.01          # Adam
    batch_size: int = 64
    max_epochs: int = 5       # at most; early stopping picks the best epoch
    valid_share: float = 0.1  # of the training data, held out for early stopping


def fit(tokens: torch.Tensor, corpus: Corpus, seed: int, settings: LmSettings = LmSettings(),
        valid: torch.Tensor | None = None) -> LSTMGenerator:
    """An LSTM LM fitted to ``tokens``, stopped where its NLL on ``valid`` (default: the
    last ``valid_share`` of ``tokens``) stops falling. Its own random streams: the global
    random state is left as it was."""
    if valid is None:
        cut = max(1, int(len(tokens) * (1 - settings.valid_share)))
        tokens, valid = tokens[:cut], tokens[cut:] if cut < len(tokens) else tokens[:1]
    lm = _new_lm(corpus, settings, seed)
    optimizer = torch.optim.Adam(lm.parameters(), lr=settings.lr)
    order = stream(seed, ORDER_STREAM)
    best, best_state = float("inf"), None
    for _ in range(settings.max_epochs):
        mle_epoch(lm, tokens, optimizer, settings.batch_size, 5.0, order)
        score = nll(lm, valid)
        if score >= best:
            break
        best, best_state = score, {k: v.clone() for k, v in lm.state_dict().items()}
    lm.load_state_dict(best_state)
    return lm.eval()


def _new_lm(corpus: Corpus, settings: LmSettings, seed: int) -> LSTMGenerator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, WEIGHTS_STREAM))
        return LSTMGenerator(corpus.vocab_size, corpus.seq_len, settings.emb_dim,
                             settings.hidden_dim, corpus.start_token)


def nll(lm: LSTMGenerator, tokens: torch.Tensor) -> float:
    """Mean NLL per token (nats) of ``tokens`` under ``lm``."""
    lm.eval()
    return mean_token_nll(lm, tokens)


def nll_and_se(lm: LSTMGenerator, tokens: torch.Tensor) -> tuple[float, float]:
    """``nll`` and its standard error over the sequences of ``tokens``."""
    lm.eval()
    return mean_token_nll_and_se(lm, tokens)


def reference_lm(corpus: Corpus, seed: int, shared_dir: Path | None,
                 shared_files: dict[str, str] | None = None) -> LSTMGenerator:
    """The LM of the training split (early stopping on the held-out split), trained once
    per data set, seed and settings and kept in ``shared_dir`` with its sha256 (checked
    when reused; ``shared_files`` gets file name -> digest, for the run's config.json)."""
    settings = LmSettings()
    key = json.dumps({"settings": asdict(settings), "corpus": corpus.info, "seed": seed,
                      "dataset": corpus.name, "streams": SCHEME}, sort_keys=True, default=str)
    if shared_dir is None:
        return fit(corpus.train, corpus, seed, settings, valid=corpus.test)
    path = Path(shared_dir) / f"lm-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
    with store.locked(path.with_suffix(".lock")):  # runs beside each other train it once
        if path.exists():
            saved, digest = store.read_shared(path)
            lm = _new_lm(corpus, settings, seed)
            try:
                lm.load_state_dict(saved["lm"])
            except (KeyError, TypeError, RuntimeError):
                raise HarnessError(f"{path} is not this data set's judge LM; delete it and "
                                   f"run the command again to make it anew") from None
        else:
            lm = fit(corpus.train, corpus, seed, settings, valid=corpus.test)
            digest = store.write_shared(path, {"lm": lm.state_dict(), "key": key})
    if shared_files is not None:
        shared_files[path.name] = digest
    return lm.eval()


# The reverse LM is fitted at every evaluation: 500 samples, as many as a sweep temperature
# has (the same on every data set, so the score does not depend on how many samples a data
# set evaluates), and at most 3 epochs. At 1,000 it cost 11.5 s on Obama's 40-token
# paragraphs (3.8 s at 500), more than a third of an MLE run's evaluation.
REVERSE = LmSettings(max_epochs=3)
REVERSE_SAMPLES = 500


def reverse_lm_score(samples: torch.Tensor, corpus: Corpus, seed: int) -> float:
    """The held-out split's NLL per token (its first ``REVERSE_SAMPLES``) under an LM fitted
    to the first ``REVERSE_SAMPLES`` samples."""
    return nll(_reverse_lm(samples, corpus, seed), corpus.test[:REVERSE_SAMPLES])


def reverse_lm_score_and_se(samples: torch.Tensor, corpus: Corpus, seed: int
                            ) -> tuple[float, float]:
    """``reverse_lm_score`` and its standard error over the held-out sequences. That error
    leaves out the noise of fitting the LM to these samples (another draw of samples gives
    another LM): refitting it to resampled samples would cost several fits."""
    return nll_and_se(_reverse_lm(samples, corpus, seed), corpus.test[:REVERSE_SAMPLES])


def _reverse_lm(samples: torch.Tensor, corpus: Corpus, seed: int) -> LSTMGenerator:
    return fit(samples[:REVERSE_SAMPLES], corpus, seed, REVERSE)
