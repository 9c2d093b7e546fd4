"""harness: train and compare sequence generators the way the SeqGAN paper did."""
import pluggy

from harness.api import Corpus, Dataset, Diverged, Generator, Method, RunContext, check_finite

hookimpl = pluggy.HookimplMarker("harness")

__all__ = ["hookimpl", "Corpus", "Dataset", "Diverged", "Generator", "Method", "RunContext",
           "check_finite"]
__version__ = "0.1.0"
