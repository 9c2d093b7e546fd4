"""SeqGAN's Monte-Carlo rollout reward, computed in one batch.

For a generated sequence Y of length T, the reward of token t is
Q_t = mean over N completions of the prefix Y_1..t, sampled by the rollout policy,
of score(completion), and Q_T = score(Y). ``score`` maps completed sequences [M, T]
to [M] in [0, 1]: the discriminator's P(real) for SeqGAN, BLEU for PG-BLEU.

The rollout policy is a delayed copy of the generator (LantaoYu/SeqGAN rollout.py).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch

from harness.generator import LSTMGenerator, State, sample_from_logits

Score = Callable[[torch.Tensor], torch.Tensor]


def _draw(logits: torch.Tensor, greedy: bool, multinomial: bool,
          generator: torch.Generator | None) -> torch.Tensor:
    """One token per row: argmax, torch.multinomial (the naive baseline) or inverse CDF."""
    if greedy:
        return logits.argmax(dim=-1)
    if multinomial:
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return sample_from_logits(logits, generator=generator)[0]


def _score_in_chunks(score: Score, rows: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([score(rows[i:i + batch]).float().to(rows.device)
                      for i in range(0, len(rows), batch)])


class Rollout:
    """The rollout policy: a frozen copy of the generator, moved towards it by ``update``."""

    def __init__(self, generator: LSTMGenerator, update_rate: float = 0.8):
        self.update_rate = update_rate
        self.policy = copy.deepcopy(generator).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, generator: LSTMGenerator) -> None:
        """theta_rollout <- r * theta_rollout + (1 - r) * theta_generator, embedding copied.

        This is what LantaoYu/SeqGAN's ``update_params`` writes: the embedding is taken
        from the generator as is, the LSTM and output layer move at rate r = 0.8. (In
        their TF1 graph every rollout weight is a ``tf.identity`` of the generator's
        variable, built once in ``__init__``, so the sampling graph in fact reads the
        current generator weights and ``update_params`` changes nothing it runs:
        ``update_rate=0`` reproduces that behaviour, 0.8 the evident intent and what
        the PyTorch ports do.)
        """
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
    def rewards(self, sequences: torch.Tensor, n_rollouts: int, score: Score,
                generator: torch.Generator | None = None, greedy: bool = False,
                chunk: int = 256, score_batch: int = 1 << 16) -> torch.Tensor:
        """Q [B, T] for ``sequences`` [B, T], every completion advanced in one batch.

        All completed rows and ``sequences`` go to ``score`` together, ``score_batch`` rows
        a call (one call at paper sizes, so the discriminator builds its look-up tables
        once; it chunks as suits it). ``greedy`` completes with the argmax instead of
        sampling (tests).
        """
        tokens = sequences.to(self.policy.device)
        n_seq, length = tokens.shape
        completed = self._complete(tokens, n_rollouts, generator, greedy, chunk)
        scores = _score_in_chunks(score, torch.cat([completed, tokens]), score_batch)
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
        output layer and sampling run ``chunk`` rows at a time so the [chunk, vocab]
        softmax stays in cache.
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
        for step in range(1, length):  # the 0-based position being sampled
            ready, active = (step - 1) * block, step * block
            if ready:  # rows that sampled position step - 1 read that token
                inputs = policy.embedding(completed[:ready, step - 1:step])
                _, (h[:, :ready], c[:, :ready]) = policy.lstm(inputs, (h[:, :ready], c[:, :ready]))
            for i in range(0, active, chunk):
                j = min(i + chunk, active)
                completed[i:j, step] = _draw(policy.output(h[0, i:j]), greedy, False, generator)
        return completed

    @torch.no_grad()
    def rewards_naive(self, sequences: torch.Tensor, n_rollouts: int, score: Score,
                      generator: torch.Generator | None = None, greedy: bool = False,
                      multinomial: bool = False) -> torch.Tensor:
        """The reference loop: for each rollout, for each prefix, read it and sample the rest.

        As the authors' ``get_reward`` does (with ``multinomial=True`` it samples as
        they and the PyTorch ports do); the benchmark's baseline and the tests' reference.
        """
        policy = self.policy
        tokens = sequences.to(policy.device)
        n_seq, length = tokens.shape
        total = torch.zeros(n_seq, length - 1, device=tokens.device)
        inputs = policy.shifted_inputs(tokens)
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
