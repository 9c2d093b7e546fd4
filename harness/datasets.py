"""The built-in data sets, registered through the same hook a plugin uses."""
from harness import hookimpl, oracle
from harness.api import Dataset


@hookimpl
def register_datasets(register):
    register(Dataset("oracle", oracle.load_paper_oracle,
                     "synthetic: samples of the SeqGAN authors' oracle LSTM (vocab 5,000, length 20)"))
