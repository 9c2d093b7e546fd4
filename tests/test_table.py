"""Tables from synthetic results: mean ± stderr, Welch's p against the data set's
baseline, the published figures beside ours; and a data set and method of a test-only
plugin shown with their own metadata."""
import math
import os
import types
from dataclasses import make_dataclass
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import ttest_ind

import harness
from harness import store, table
from harness.api import Dataset

SEQGAN = [8.70, 8.75, 8.72]
MLE = [9.05, 9.01, 9.08]


@pytest.fixture
def results(tmp_path):
    for method, values in (("seqgan", SEQGAN), ("mle", MLE)):
        for seed, value in enumerate(values):
            run = tmp_path / "paper" / "oracle" / method / f"seed-{seed}"
            store.write_json(run / "config.json", {"run_id": "paper", "dataset": "oracle",
                                                   "method": method, "seed": seed, "corpus": {},
                                                   "profile": "paper"})
            store.write_json(run / "metrics.json", {"nll_oracle": value, "nll_test": value - 1,
                                                    "nll_oracle_best_so_far": value - 0.05})
    return tmp_path


def test_comparison_tests_each_method_against_the_data_sets_baseline(results):
    rows = table.collect(results)
    assert set(rows.columns) == set(table.COLUMNS) and len(rows) == 18
    frame = table.comparison(rows, "oracle").set_index("method")
    assert list(frame.index) == ["mle", "seqgan"]  # the plugins' registration order
    mean, sem = rows[(rows.method == "mle") & (rows.metric == "nll_oracle")].value.agg(["mean", "sem"])
    assert frame.loc["mle", "nll_oracle"] == f"{mean:.4f} ± {sem:.4f}"
    p = ttest_ind(SEQGAN, MLE, equal_var=False).pvalue
    assert frame.loc["seqgan", "vs mle: nll_oracle"] == f"better (p={p:.2g})"  # lower is better
    assert frame.loc["mle", "vs mle: nll_oracle"] == "–"
    assert frame.loc["seqgan", "seeds"] == 3
    # --baseline picks another row: MLE is then worse than SeqGAN.
    other = table.comparison(rows, "oracle", baseline="seqgan").set_index("method")
    assert other.loc["mle", "vs seqgan: nll_oracle"] == f"worse (p={p:.2g})"


def test_a_published_figure_gets_a_gap_only_under_its_own_conditions(results):
    rows = table.collect(results)
    def under(profile: str) -> pd.DataFrame:  # as if the runs had been made so
        return rows.assign(profile=profile.split(" ")[0], conditions=rows.conditions.str.replace(
            "profile=paper", f"profile={profile}"))

    made_their_way = under("authors")  # the code that made Table 1
    def table_1(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame.source.str.contains("Table 1")].set_index("method")

    paper = table_1(table.beside_the_paper(made_their_way, "oracle"))
    assert paper.loc["mle", "paper"] == "9.038"
    assert paper.loc["mle", "column of ours"] == "nll_oracle"
    assert paper.loc["mle", "gap (ours - paper)"] == f"{sum(MLE) / 3 - 9.038:+.4f}"
    assert paper.loc["seqgan", "column of ours"] == "nll_oracle_best_so_far"  # their best kept
    # Their SeqGAN summed the policy-gradient loss over the batch; ours averages it.
    assert paper.loc["seqgan", "gap (ours - paper)"] == ("not comparable: pg_loss averaged "
                                                         "over the batch (the figure's: summed "
                                                         "over the batch)")
    assert "random" not in paper.index  # no run of it here
    # The profile changed by --set is not the profile that made the figure.
    changed = table_1(table.beside_the_paper(under("authors with --set epochs=2"), "oracle"))
    assert changed.loc["mle", "gap (ours - paper)"] == \
        "not comparable: profile authors with --set epochs=2 (the figure's: authors)"
    # The paper's settings are not the code that made the figure: no gap either.
    other = table_1(table.beside_the_paper(rows, "oracle"))
    assert other.loc["mle", "gap (ours - paper)"] == \
        "not comparable: profile paper (the figure's: authors)"
    # The authors' later log, made under the paper's settings, stops at epoch 115 of 120.
    log = table.beside_the_paper(rows, "oracle").set_index("source").filter(like="run log", axis=0)
    assert log.set_index("method").loc["mle", "gap (ours - paper)"] == \
        "not comparable: point the end of the run (the figure's: MLE epoch 115 of 120)"


def test_conditions_are_matched_key_by_key():
    figure = table.parse_conditions("oracle=seqgan-target-params; profile=paper|authors")
    assert figure == {"oracle": {"seqgan-target-params"}, "profile": {"paper", "authors"}}
    ours = {"oracle": {"seqgan-target-params"}, "profile": {"paper"}}
    assert table.differing_condition(figure, ours) == ""
    assert table.differing_condition(figure, {**ours, "profile": {"paper", "default"}}) == \
        "profile default, paper (the figure's: authors or paper)"
    assert table.differing_condition({"logits": {"x1.5"}}, {}) == \
        "logits unknown (the figure's: x1.5)"
    assert table.differing_condition(table.parse_conditions(""), {}) == ""


def test_one_seed_gives_no_p_value():
    assert math.isnan(table.welch_p(pd.Series([1.0]), pd.Series([1.0, 2.0])))
    assert table.verdict(pd.Series([1.0]), pd.Series([1.0, 2.0]), True) == "–"


def test_render_markdown_latex_csv(results):
    rows = table.collect(results)
    markdown = table.render(rows, results=results)
    assert markdown.startswith("### oracle (paper; computed on cpu)") and "| seqgan" in markdown
    assert "Beside the published figures" in markdown and "Welch" in markdown
    assert "\\begin{tabular}" in table.render(rows, "latex")
    assert table.render(rows, "csv").splitlines()[0] == (
        "run_id,dataset,data,device,method,nll_oracle,nll_oracle_best_so_far,nll_test,seeds")


def test_published_figures_are_package_data():
    paper = table.published_figures("oracle")
    oracle = paper[paper.metric.str.startswith("nll_oracle")]
    tables = oracle[oracle.source.str.contains("et al.")]
    assert dict(zip(tables.method, tables.value)) == {
        "random": 10.310, "mle": 9.038, "ss": 8.985, "pg-bleu": 8.946, "seqgan": 8.736,
        "rankgan": 8.247, "relgan": 6.680}  # the last two: methods' own papers
    logs = oracle[oracle.source.str.contains("run log")]  # the authors' own logs
    assert sorted(zip(logs.method, logs.value)) == [
        ("leakgan", 7.03147), ("mle", 9.07058), ("rankgan", 7.8908), ("rankgan", 8.2724),
        ("rankgan", 8.3122), ("seqgan", 8.6832)]
    assert (oracle.conditions != "").all()  # each states its conditions
    # RelGAN's figure was made on RelGAN's own oracle: it is shown on that data set, and on
    # SeqGAN's oracle's table too, where its condition refuses a gap.
    relgan = table.published_figures("oracle-relgan").set_index("method")
    assert relgan.loc["relgan", "value"] == 6.680
    assert relgan.loc["relgan", "conditions"] == "oracle=relgan-seeded-tf; profile=authors"
    assert set(table.published_figures().dataset) == {"obama", "oracle", "oracle-relgan|oracle",
                                                      "poems"}


@pytest.fixture
def toy_plugin(register_plugin, tmp_path):
    """A test-only data set (its own headline, diversity metric, baseline and published
    figures) and method, registered as a third-party plugin would."""
    from harness_tiny import tiny_oracle_corpus

    published = tmp_path / "toy-paper.csv"
    published.write_text("dataset,method,metric,value,protocol,note,source\n"
                         "toy,echo,distinct_2,0.5,the toy paper's way,,\"Toy et al., Table 9\"\n")
    module = types.ModuleType("harness_toy")

    class Echoes(harness.Generator):
        def __init__(self, rows):
            self.rows = rows

        def sample(self, n, temperature=1.0, generator=None):
            return self.rows[:n]

        def log_likelihood(self, tokens, temperature=1.0):
            return (tokens * 0 - 1.0).sum(1)

    class Echo(harness.Method):
        """Echo: the training set itself, drawn again."""

        name = "echo"
        Config = make_dataclass("EchoConfig", [])  # no settings

        def train(self, ctx):
            return Echoes(ctx.corpus.train)

    @harness.hookimpl
    def register_datasets(register):
        register(Dataset("toy", lambda **kw: tiny_oracle_corpus("default", kw["seed"]),
                         "a toy", headline=("distinct_2", "bleu3_train"),
                         diversity="ms_jaccard2", baseline="echo", published=(published,)))

    @harness.hookimpl
    def register_methods(register):
        register(Echo())

    module.register_datasets, module.register_methods = register_datasets, register_methods
    register_plugin(module, "harness_toy")
    return module


@pytest.mark.slow
def test_a_plugins_data_set_and_method_get_their_own_table_and_plots(cli, toy_plugin):
    result = cli("-q", "run", "-m", "echo", "-m", "random", "-d", "toy", "--seeds", "2")
    assert result.exit_code == 0, result.output
    shown = cli("table").output
    header = next(line for line in shown.splitlines() if line.startswith("| method"))
    assert "distinct_2" in header and "bleu3_train" in header and "ms_jaccard2" in header
    assert "vs echo: distinct_2" in header
    assert "Toy et al., Table 9" in shown and "the toy paper's way" in shown
    written = [Path(p).name for p in cli("plot").output.split()]
    assert "curves-default-toy.png" in written and "quality-diversity-default-toy.png" in written
    sweep = pd.read_csv(next(Path(os.environ["HARNESS_RESULTS"]).glob(
        "default/toy/echo/seed-0")) / "sweep.csv")
    assert {"distinct_2", "ms_jaccard2"} <= set(sweep.columns)


# --- at matched diversity ---------------------------------------------------------------

def _sweep(method: str, seed: int, slope: float, offset: float) -> pd.DataFrame:
    """A straight sweep: diversity = T, quality = offset + slope * T (lower is better)."""
    temperatures = [0.5, 0.75, 1.0, 1.25, 1.5]
    return pd.DataFrame({"temperature": temperatures, "nll_test": temperatures,
                         "nll_oracle": [offset + slope * t for t in temperatures],
                         "method": method, "seed": seed, "dataset": "oracle", "run_id": "x"})


def test_interpolation_picks_the_crossing_nearest_temperature_one():
    # A U-shaped diversity curve crosses the target twice: below and above T = 1.
    sweep = pd.DataFrame({"temperature": [0.5, 1.0, 1.2, 2.0], "d": [3.0, 1.0, 2.0, 4.0],
                          "q": [10.0, 20.0, 30.0, 40.0]})
    assert table.interpolate_at(sweep, 2.0, "d", "q") == pytest.approx((1.2, 30.0))  # not 0.75
    assert table.interpolate_at(sweep, 1.5, "d", "q") == pytest.approx((1.1, 25.0))  # not 0.875
    assert all(math.isnan(v) for v in table.interpolate_at(sweep, 0.5, "d", "q"))


def test_each_method_is_judged_at_the_baselines_diversity():
    # MLE: quality 9 + T; the other method: quality 8.5 + 0.5 T (better at every diversity).
    sweeps = pd.concat([_sweep("mle", seed, 1.0, 9.0 + 0.01 * seed) for seed in range(3)]
                       + [_sweep("seqgan", seed, 0.5, 8.5 + 0.01 * seed) for seed in range(3)])
    frame = table.matched_diversity(sweeps, "oracle").set_index("method")
    column = "nll_oracle at matched nll_test"
    # MLE's diversity at T = 1 is 1.0; seqgan reaches it at T = 1.0 with quality 9.0 + 0.01 s.
    assert frame.loc["seqgan", column] == table.mean_pm_stderr(pd.Series([9.0, 9.01, 9.02]))
    assert frame.loc["seqgan", "seeds matched"] == "3 of 3"
    assert frame.loc["seqgan", "vs mle at T=1"].startswith("better (p=")
    shifted = pd.concat([_sweep("mle", s, 1.0, 9.0) for s in range(3)]
                        + [_sweep("ss", s, 1.0, 9.0).assign(nll_test=lambda f: f.nll_test + 2)
                           for s in range(3)])
    never = table.matched_diversity(shifted, "oracle").set_index("method")
    assert never.loc["ss", "temperature at mle's nll_test"] == "not reached"


def test_the_committed_references_get_a_gap_only_where_every_condition_holds():
    """Every numeric gap `harness table` prints for the committed reference sets, with the
    figure it is taken from; every other figure (RelGAN's 6.680 on another oracle, SeqGAN's
    made with a summed loss, ...) is "not comparable" with the condition named."""
    rows = table.collect(store.reference_dir())
    gaps, refused = set(), {}
    for (run_id, dataset), group in rows.groupby(["run_id", "dataset"]):
        for line in table.beside_the_paper(group, dataset).itertuples():
            gap = line[4]
            if gap.startswith("not comparable: "):
                refused[run_id, dataset, line.method, line.paper] = gap
            elif gap != "–":
                gaps.add((run_id.split("-cpu")[0], dataset, line.method, line.paper))
    assert gaps == {("reference-authors", "oracle", "real", "5.761"),
                    ("reference", "oracle", "real", "5.761"), ("reference", "poems", "real", "0.746")}
    assert refused["reference-cpu-2026-12-04", "oracle", "relgan", "6.68"].startswith(
        "not comparable: oracle seqgan-target-params")
    # The authors' runs were made under an earlier form of the authors profile (before it had
    # the authors' one bias per LSTM gate and their bias-free highway), and say so.
    assert refused["reference-authors-cpu-2026-11-30", "oracle", "mle", "9.038"] == (
        "not comparable: profile authors as it was before (lstm_biases=2) (the figure's: authors)")
    assert refused["reference-authors-cpu-2026-11-30", "oracle", "seqgan", "8.736"] == (
        "not comparable: profile authors with --set adv_batches=1, disc_pretrain_rounds=1 "
        "as it was before (lstm_biases=2, highway_bias=True, pg_loss=mean) (the figure's: authors)")
