"""A small causal Transformer decoder behind the decoding contract (``harness.generator.Decoder``).

nanoGPT's plain shape, written here: token and learned position embeddings, ``layers``
pre-norm blocks (x + attention(LN(x)), then x + MLP(LN(x))), a final LayerNorm and a linear
layer over the vocabulary. The teacher-forced pass is one causal pass; decoding steps one
token at a time over a key-value cache, so sampling and the rollout cost one position a step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.generator import Decoder, _shapes_only, draw_inverse_cdf, eval_mode

# The decoding state: the number of tokens read so far, and per layer its keys and values
# [n, heads, read, head_dim]. Plain tensors and an int: nothing to pickle.
Cache = tuple[tuple[torch.Tensor, torch.Tensor], ...]
KVState = tuple[int, Cache]


class SelfAttention(nn.Module):
    """Multi-head self-attention: one linear layer makes the queries, keys and values,
    another mixes the heads' outputs."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[n, T, d_model] -> queries, keys, values [n, heads, T, head_dim] each."""
        n, steps, _ = x.shape
        return tuple(part.view(n, steps, self.heads, self.head_dim).transpose(1, 2)
                     for part in self.qkv(x).chunk(3, dim=-1))

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        """[n, heads, T, head_dim] -> the output projection of [n, T, d_model]."""
        n, _, steps, _ = y.shape
        return self.proj(y.transpose(1, 2).reshape(n, steps, self.heads * self.head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The causal pass over whole sequences [n, T, d_model]."""
        q, k, v = self._split(x)
        return self._merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))

    def step(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One position [n, 1, d_model] after the cached ones: its output and the cache with
        its key and value appended (new tensors; the ones given are left as they are). The
        cache holds only the past, so the attention needs no mask."""
        q, k, v = self._split(x)
        keys, values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
        return self._merge(F.scaled_dot_product_attention(q, keys, values)), keys, values


class Block(nn.Module):
    """x + dropout(attention(LN(x))), then x + dropout(MLP(LN(x))); MLP: Linear, GELU, Linear."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm_attention = nn.LayerNorm(d_model)
        self.attention = SelfAttention(d_model, heads)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm_attention(x)))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))

    def step(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attended, keys, values = self.attention.step(self.norm_attention(x), keys, values)
        x = x + self.dropout(attended)
        return x + self.dropout(self.mlp(self.norm_mlp(x))), keys, values


class TransformerGenerator(Decoder):
    """A causal Transformer decoder over ``vocab_size`` tokens and ``seq_len`` positions.

    Position p embeds the p-th input: the start token at 0, y_1 at 1, and so on. Dropout
    (``dropout``, in training only) acts on the embeddings and on each block's attention and
    MLP outputs. Weights are initialised as nanoGPT's: every Linear and Embedding weight from
    N(0, 0.02), biases zero, LayerNorms ones and zeros; drawn from torch's global generator
    module by module in a fixed order, so a seeded construction gives the same weights.
    """

    def __init__(self, vocab_size: int, seq_len: int, start_token: int = 0, layers: int = 2,
                 heads: int = 2, d_model: int = 64, d_ff: int = 128, dropout: float = 0.0):
        super().__init__()
        sizes = dict(vocab_size=vocab_size, seq_len=seq_len, layers=layers, heads=heads,
                     d_model=d_model, d_ff=d_ff)
        for name, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or \
                not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        if isinstance(start_token, bool) or not isinstance(start_token, int) or \
                not 0 <= start_token < vocab_size:
            raise ValueError(f"start_token must be a token of the vocabulary (0 to "
                             f"{vocab_size - 1}), not {start_token!r}")
        self.constructor_args = dict(vocab_size=vocab_size, seq_len=seq_len,
                                     start_token=start_token, layers=layers, heads=heads,
                                     d_model=d_model, d_ff=d_ff, dropout=float(dropout))
        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.heads, self.head_dim = heads, d_model // heads
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(seq_len, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, heads, d_ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size)
        self.apply(_initialise)  # modules in registration order: a fixed order of draws

    @staticmethod
    def parameter_count(vocab_size: int, seq_len: int, layers: int, heads: int, d_model: int,
                        d_ff: int) -> int:
        """The weights of a Transformer of these sizes, counted on the meta device (built
        without memory, however large the sizes)."""
        shapes = _shapes_only(TransformerGenerator, dict(
            vocab_size=vocab_size, seq_len=seq_len, layers=layers, heads=heads,
            d_model=d_model, d_ff=d_ff))
        return sum(tensor.numel() for tensor in shapes.values())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits [n, T, vocab] of input tokens [n, T] (T <= seq_len), one causal pass."""
        steps = inputs.shape[1]
        if steps > self.seq_len:
            raise ValueError(f"{steps} positions, but this Transformer has {self.seq_len}")
        x = self.embedding(inputs) + self.position.weight[:steps]
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        return self.output(self.norm(x))

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self(self.shifted_inputs(tokens))

    # The decoding contract (``Decoder``): the state is (tokens read, per layer (keys, values)).
    def start_state(self, n: int) -> KVState:
        weight = self.output.weight
        empty = weight.new_empty(n, self.heads, 0, self.head_dim)
        return 0, tuple((empty, empty) for _ in self.blocks)

    def step(self, tokens: torch.Tensor, state: KVState) -> tuple[torch.Tensor, KVState]:
        hidden, state = self._advance(tokens, state)
        return self.output(hidden), state

    def _advance(self, tokens: torch.Tensor, state: KVState) -> tuple[torch.Tensor, KVState]:
        """``step`` short of the output layer: the final LayerNorm's output [n, d_model]."""
        read, cache = state
        if read >= self.seq_len:
            raise ValueError(f"cannot step past position {self.seq_len - 1}: this Transformer "
                             f"has {self.seq_len} positions and has read them all")
        x = self.dropout(self.embedding(tokens[:, None]) + self.position.weight[read])
        grown = []
        for block, (keys, values) in zip(self.blocks, cache):
            x, keys, values = block.step(x, keys, values)
            grown.append((keys, values))
        return self.norm(x).squeeze(1), (read + 1, tuple(grown))

    def select_state(self, state: KVState, rows: torch.Tensor) -> KVState:
        read, cache = state
        return read, tuple((keys[rows], values[rows]) for keys, values in cache)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling over the key-value cache, without dropout: the very tokens of
        ``Decoder.sample`` (one uniform a row and step, the same inverse-CDF draw), twice as
        fast on the CPU at 5,000 words, the logits projected into one reused buffer and
        drawn in place (a fresh [n, vocab] tensor per step costs page faults)."""
        with eval_mode(self):
            token = torch.full((n,), self.start_token, dtype=torch.long, device=self.device)
            tokens = torch.empty(n, self.seq_len, dtype=torch.long, device=self.device)
            if not n:
                return tokens
            logits = self.output.weight.new_empty(n, self.vocab_size)
            state = self.start_state(n)
            for t in range(self.seq_len):
                hidden, state = self._advance(token, state)
                # addmm: the very floats of self.output, written into the buffer
                torch.addmm(self.output.bias, hidden, self.output.weight.t(), out=logits)
                if temperature != 1.0:
                    logits.div_(temperature)
                uniform = torch.rand(n, 1, device=self.device, generator=generator)
                token = draw_inverse_cdf(logits, uniform, logits, log_probs=False)[0]
                tokens[:, t] = token
            return tokens


def _initialise(module: nn.Module) -> None:
    """nanoGPT's initialisation: Linear and Embedding weights N(0, 0.02), biases zero."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


@hookimpl
def register_generators(register):
    register(TransformerGenerator)
