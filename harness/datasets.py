"""The built-in data sets, registered through the same hook a plugin uses."""
from harness import hookimpl, oracle, text
from harness.api import Dataset


@hookimpl
def register_datasets(register):
    register(Dataset("oracle", oracle.load_paper_oracle,
                     "synthetic: samples of the SeqGAN authors' oracle LSTM (vocab 5,000, length 20)"))
    register(Dataset("poems", text.load_poems,
                     "real: 16,394 Chinese quatrains (Texygen shi.txt), 20 characters each"))
    register(Dataset("obama", text.load_obama,
                     "real: Obama speech paragraphs, 40 words; the paper's file if it can be "
                     "had, else the CoPS stand-in"))
