"""Draw RelGAN's synthetic oracle LSTM with TensorFlow, as the authors' code draws it.

Source: github.com/weilinie/RelGAN, ``utils/models/OracleLstm.py`` (class ``OracleLstm``),
built by ``run.py`` for ``--dataset oracle`` with the settings of
``oracle/experiments/oracle_relgan.py``; read at commit
740272542e04728fca859680e91420b82a7cd1c5 (the file is unchanged since the initial commit
f5c1866d79d784eacabfb6913eb6655a2ac8d60b). The code is the authors'; this script is a
re-implementation, not a copy.

What it reproduces: the oracle's 15 weight arrays, float32, under the names of SeqGAN's
``target_params`` (the same LSTM): ``embeddings`` [5000, 32]; ``Wi Wf Wog Wc`` [32, 32],
``Ui Uf Uog Uc`` [32, 32], ``bi bf bog bc`` [32] (input, forget, output gate, candidate);
``Wo`` [32, 5000], ``bo`` [5000]. Each is the first draw of a stateful ``random_normal``
op (mean 0, stddev 1) under graph seed 1234 and its own explicit op seed, so TensorFlow's
seed pair is (1234, op seed) whatever the order of construction (kept as the authors' all
the same). ``Wi`` and ``Uc`` share op seed 111 and shape, hence are equal; so in the
authors' oracle. Vocabulary 5,000, embedding and hidden 32 (run.py's defaults, which
oracle_relgan.py passes), start token 0, zero initial state; the sequence length (20 or 40)
does not enter the weights.

Texygen (geek-ai/Texygen, utils/oracle/OracleLstm.py), from which RelGAN took the class,
draws the same ops with the same seeds but the twelve gate arrays with stddev 1e6
(``--gate-std 1e6``), which saturates every gate; embeddings and output layer are alike.

Run it in a virtual environment of its own (TensorFlow is no dependency of the harness):

    python3.11 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
    /tmp/tfvenv/bin/python datasets/make_relgan_oracle.py datasets/oracles/relgan_oracle.npz

The committed npz was made so with tensorflow-cpu 2.21.0 and numpy 2.4.6 on a CPU.

Evidence that TensorFlow 2 draws what TensorFlow 1 drew: Texygen's repository ships samples
its TF 1 oracle made (vocabulary 20, e.g. models/mle/save/oracle.txt at
e2648256fdd1ffbfdfe1f24cb332724792155d55). ``--replay FILE`` feeds this script's oracle to
TensorFlow's own seeded sampling op (``multinomial``, seeds (1234, ``--op-seed``)) step by
step and counts the tokens that come out identical:

    .../python datasets/make_relgan_oracle.py --replay oracle.txt --vocab-size 20 \\
        --gate-std 1e6 --op-seed 218
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SOURCE = "weilinie/RelGAN utils/models/OracleLstm.py @740272542e04728fca859680e91420b82a7cd1c5"
GRAPH_SEED = 1234
BATCH = 64  # the authors' batch: the oracle draws its samples 64 rows at a time

# (name, shape as (rows, cols) in terms of V=vocab, E=embedding, H=hidden, op seed), in the
# authors' order of construction; True where the array is a gate weight (Texygen's 1e6).
WEIGHTS = (
    ("embeddings", ("V", "E"), 123314154, False),
    ("Wi", ("E", "H"), 111, True), ("Ui", ("H", "H"), 211, True), ("bi", ("H",), 311, True),
    ("Wf", ("E", "H"), 114, True), ("Uf", ("H", "H"), 115, True), ("bf", ("H",), 116, True),
    ("Wog", ("E", "H"), 997, True), ("Uog", ("H", "H"), 998, True), ("bog", ("H",), 999, True),
    ("Wc", ("E", "H"), 110, True), ("Uc", ("H", "H"), 111, True), ("bc", ("H",), 112, True),
    ("Wo", ("H", "V"), 12341, False), ("bo", ("V",), 56865246, False),
)


def _tf():
    import tensorflow as tf  # only here: the harness imports this module without TensorFlow

    return tf.compat.v1


def draw_oracle(vocab_size: int = 5000, emb_dim: int = 32, hidden_dim: int = 32,
                gate_std: float = 1.0, graph_seed: int = GRAPH_SEED) -> dict[str, np.ndarray]:
    """The oracle's arrays, drawn by TensorFlow's seeded ops in a fresh graph on the CPU."""
    tf1 = _tf()
    sizes = {"V": vocab_size, "E": emb_dim, "H": hidden_dim}
    graph = tf1.Graph()
    with graph.as_default(), graph.device("/cpu:0"), tf1.variable_scope("generator"):
        tf1.set_random_seed(graph_seed)
        variables = {
            name: tf1.Variable(tf1.random_normal([sizes[d] for d in dims], 0.0,
                                                 gate_std if gate else 1.0, seed=seed))
            for name, dims, seed, gate in WEIGHTS}
        # One run of the initialisers: each variable holds its op's first draw, as in the
        # authors' session (init_sess runs global_variables_initializer once).
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            return {name: np.asarray(value, dtype=np.float32)
                    for name, value in session.run(variables).items()}


def save(arrays: dict[str, np.ndarray], path: Path) -> None:
    """An npz without pickle, arrays in the authors' order (np.savez writes a fixed
    timestamp, so the same arrays give the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{name: arrays[name] for name, *_ in WEIGHTS})


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # Texygen's 1e6 gates overflow exp: sigmoid is then 0
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def oracle_step(p: dict[str, np.ndarray], x: np.ndarray, h: np.ndarray, c: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of the authors' oracle on embedded inputs ``x`` [n, E]: gates from x @ W +
    h @ U + b (no second bias), c = f * c + i * tanh(...), h = o * tanh(c); returns
    log(softmax(h @ Wo + bo)) [n, V] (float32, as their graph computes it), h and c."""
    i = _sigmoid(x @ p["Wi"] + h @ p["Ui"] + p["bi"])
    f = _sigmoid(x @ p["Wf"] + h @ p["Uf"] + p["bf"])
    o = _sigmoid(x @ p["Wog"] + h @ p["Uog"] + p["bog"])
    c = f * c + i * np.tanh(x @ p["Wc"] + h @ p["Uc"] + p["bc"])
    h = o * np.tanh(c)
    logits = h @ p["Wo"] + p["bo"]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    with np.errstate(divide="ignore"):
        return np.log(shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32), h, c


def replay(p: dict[str, np.ndarray], op_seed: int, n_rows: int, seq_len: int = 20,
           start_token: int = 0) -> np.ndarray:
    """Samples as the authors' graph draws them: one stateful multinomial kernel, seeds
    (1234, op_seed), run at every step of every batch of 64 on this oracle's log-softmax."""
    tf1 = _tf()
    vocab, hidden = p["Wo"].shape[1], p["Ui"].shape[0]
    graph = tf1.Graph()
    with graph.as_default(), graph.device("/cpu:0"):
        tf1.set_random_seed(GRAPH_SEED)
        log_probs = tf1.placeholder(tf1.float32, [BATCH, vocab])
        draw = tf1.multinomial(log_probs, 1, seed=op_seed)
    batches = []
    with tf1.Session(graph=graph) as session:
        for _ in range(n_rows // BATCH):
            x = p["embeddings"][np.full(BATCH, start_token)]
            h = c = np.zeros((BATCH, hidden), np.float32)
            steps = []
            for _ in range(seq_len):
                lp, h, c = oracle_step(p, x, h, c)
                steps.append(session.run(draw, {log_probs: lp})[:, 0])
                x = p["embeddings"][steps[-1]]
            batches.append(np.stack(steps, axis=1))
    return np.concatenate(batches)


def read_tokens(path: Path) -> np.ndarray:
    return np.array([[int(t) for t in line.split()] for line in path.read_text().splitlines()
                     if line.strip()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", help="the npz to write")
    parser.add_argument("--vocab-size", type=int, default=5000)
    parser.add_argument("--gate-std", type=float, default=1.0, help="Texygen's: 1e6")
    parser.add_argument("--graph-seed", type=int, default=GRAPH_SEED, help="another: a control")
    parser.add_argument("--replay", type=Path, help="a file of the oracle's samples to remake")
    parser.add_argument("--op-seed", type=int, default=218, help="the sampling op's seed")
    args = parser.parse_args()
    arrays = draw_oracle(args.vocab_size, gate_std=args.gate_std, graph_seed=args.graph_seed)
    if args.out:
        save(arrays, args.out)
        print(f"wrote {args.out}")
    if args.replay:
        theirs = read_tokens(args.replay)
        ours = replay(arrays, args.op_seed, len(theirs), seq_len=theirs.shape[1])
        same = ours == theirs[:len(ours)]
        print(f"{args.replay}: {int(same.all(axis=1).sum())} of {len(ours)} sequences and "
              f"{int(same.sum())} of {same.size} tokens identical")


if __name__ == "__main__":
    main()
