"""harness: train and compare sequence generators the way the SeqGAN paper did."""
import pluggy

from harness.api import Corpus, Dataset, Generator, Method, RunContext

hookimpl = pluggy.HookimplMarker("harness")

__all__ = ["hookimpl", "Corpus", "Dataset", "Generator", "Method", "RunContext"]
__version__ = "0.1.0"
