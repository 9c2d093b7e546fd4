"""Looking at finished runs: their samples, their trained generators, VAE interpolations."""
from __future__ import annotations

from pathlib import Path

import torch

from harness.api import HarnessError


def find_run(results: Path, method: str, dataset: str, seed: int = 0,
             run_id: str | None = None) -> Path:
    """The finished run's directory; the run id may be left out when only one has it."""
    pattern = f"{run_id or '*'}/{dataset}/{method}/seed-{seed}"
    found = [p for p in sorted(Path(results).glob(pattern)) if (p / "metrics.json").exists()]
    if not found:
        raise HarnessError(f"no finished run of {method} on {dataset}, seed {seed} under "
                           f"{results}; run `harness run -m {method} -d {dataset}` first")
    if len(found) > 1:
        ids = ", ".join(p.parents[2].name for p in found)
        raise HarnessError(f"several runs of {method} on {dataset}: {ids}; choose with --run-id")
    return found[0]


def shown_samples(run_dir: Path, n: int) -> list[str]:
    """The first ``n`` generated sequences the run kept as text."""
    return (run_dir / "samples.txt").read_text().strip("\n").split("\n\n")[:n]


def load_generator(run_dir: Path) -> torch.nn.Module:
    path = run_dir / "generator.pt"
    if not path.exists():
        raise HarnessError(f"{run_dir} kept no trained generator (generator.pt)")
    # Our own file, written by the run: it holds the module, so it is unpickled in full.
    return torch.load(path, map_location="cpu", weights_only=False)


def interpolations(generator, corpus, steps: int, pairs: int, seed: int = 0) -> list[list[str]]:
    """Decodings along the latent line between random pairs of held-out sequences."""
    if not hasattr(generator, "interpolate"):
        raise HarnessError("this method's generator has no latent space to interpolate in")
    rng = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(corpus.test), generator=rng)[:2 * pairs].view(-1, 2)
    generator.eval()
    with torch.no_grad():
        return [corpus.show(generator.interpolate(corpus.test[a], corpus.test[b], steps).cpu())
                for a, b in picks.tolist()]
