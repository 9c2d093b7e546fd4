"""The SeqGAN paper's CNN discriminator: is a token sequence real data or generated?

embedding -> parallel 1-D convolutions of several window sizes -> ReLU -> max over time
-> concatenate -> one highway layer -> dropout -> linear to two classes (0 generated,
1 real), as in the authors' ``discriminator.py`` (LantaoYu/SeqGAN), whose initialisation
this follows too. Two logits rather than one keep the authors' softmax output and their
L2 term on a [features, 2] output matrix; ``prob_real`` is the softmax's class-1 column.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import check_finite

# The authors' sizes (sequence_gan.py); dropout is the drop probability, 1 - keep 0.75.
PAPER = dict(emb_dim=64, filter_sizes=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20),
             num_filters=(100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160),
             dropout=0.25)
# A CPU-sized discriminator: the same architecture with fewer windows and filters.
SMALL = dict(emb_dim=32, filter_sizes=(1, 2, 3, 4, 5, 8, 10, 15, 20),
             num_filters=(32, 64, 64, 64, 64, 32, 32, 48, 48), dropout=0.25)
PAPER_L2 = 0.2


class Highway(nn.Module):
    """y = t * relu(W x) + (1 - t) * x with gate t = sigmoid(W_t x).

    The authors call their highway helper with gate bias 0, not the usual -2.
    """

    def __init__(self, size: int):
        super().__init__()
        self.transform = nn.Linear(size, size)
        self.gate = nn.Linear(size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * F.relu(self.transform(x)) + (1.0 - t) * x


class Discriminator(nn.Module):
    """``dropout`` is the drop probability (the paper's keep probability 0.75 is 0.25)."""

    def __init__(self, vocab_size: int, seq_len: int, emb_dim: int = PAPER["emb_dim"],
                 filter_sizes: tuple[int, ...] = PAPER["filter_sizes"],
                 num_filters: tuple[int, ...] = PAPER["num_filters"],
                 dropout: float = PAPER["dropout"]):
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
        self.highway = Highway(features)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(features, 2)
        self._init_like_authors()

    def _init_like_authors(self) -> None:
        # The authors' TF initialisers. Their highway has TF's default (Glorot uniform);
        # it keeps PyTorch's default here, a similar uniform for a layer nobody tuned.
        nn.init.uniform_(self.embedding.weight, -1.0, 1.0)
        for layer in [*self.convs, self.output]:
            nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.2, b=0.2)
            nn.init.constant_(layer.bias, 0.1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [B, 2] (class 1 = real) for int64 tokens [B, T]."""
        x = self.embedding(tokens).transpose(1, 2)  # [B, emb, T]: channels first for Conv1d
        # Bias and ReLU commute with the max over time: apply them to [B, F], not [B, F, T].
        pooled = [F.relu(F.conv1d(x, conv.weight).amax(dim=2) + conv.bias) for conv in self.convs]
        return self.head(torch.cat(pooled, dim=1))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Highway, dropout and output layer over the pooled features."""
        return self.output(self.dropout(self.highway(features)))

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
        return self.head(torch.cat(pooled, dim=1))

    @torch.no_grad()
    def prob_real(self, tokens: torch.Tensor, batch: int = 1024) -> torch.Tensor:
        """P(real) [B] in eval mode (no dropout), scored in chunks of ``batch`` rows.

        Given more rows than words (a rollout's ~20k completions), the convolutions of
        every word are computed once and looked up: 1.4x faster for the PAPER network on
        the 2-core CPU (2.0 s instead of 2.75 s for 19,520 rows), at the cost of transient
        tables of vocab x sum(k * filters) floats (250 MB at paper size). A few rows (the
        naive loop's 64) are cheaper to convolve.
        """
        was_training = self.training
        self.eval()
        try:
            device = self.output.weight.device
            tables = self._lookup_tables() if len(tokens) > self.embedding.num_embeddings else None
            probs = []
            for i in range(0, len(tokens), batch):
                chunk = tokens[i:i + batch].to(device)
                logits = self(chunk) if tables is None else self._forward_by_lookup(chunk, tables)
                probs.append(torch.softmax(logits, dim=1)[:, 1])
        finally:
            self.train(was_training)
        return torch.cat(probs) if probs else tokens.new_zeros(0, dtype=torch.float)

    def l2_penalty(self) -> torch.Tensor:
        """The authors' L2 term: tf.nn.l2_loss (sum of squares / 2) of the output W and b only."""
        return 0.5 * (self.output.weight.square().sum() + self.output.bias.square().sum())


def train_discriminator(disc: Discriminator, optimizer: torch.optim.Optimizer,
                        real: torch.Tensor, fake: torch.Tensor, epochs: int, batch_size: int,
                        l2: float = PAPER_L2, rng: torch.Generator | None = None) -> float:
    """``epochs`` passes over real (label 1) and fake (label 0) rows; the mean batch loss.

    Real and fake rows are shuffled together into mixed mini-batches, as the authors'
    Dis_dataloader does (without ``rng`` the order is fixed: all real, then all fake).
    The loss is mean cross-entropy + ``l2`` * l2_penalty(), the authors' loss; the paper's
    Adam 1e-4 is the caller's ``optimizer``.
    """
    disc.train()
    device = disc.output.weight.device
    tokens = torch.cat([real, fake])
    labels = torch.cat([torch.ones(len(real), dtype=torch.long),
                        torch.zeros(len(fake), dtype=torch.long)])
    total, batches = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(tokens), generator=rng) if rng is not None \
            else torch.arange(len(tokens))
        for start in range(0, len(tokens), batch_size):
            idx = order[start:start + batch_size]
            logits = disc(tokens[idx].to(device))
            loss = F.cross_entropy(logits, labels[idx].to(device)) + l2 * disc.l2_penalty()
            value = loss.item()
            check_finite(value, "the discriminator loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += value
            batches += 1
    return total / max(batches, 1)
