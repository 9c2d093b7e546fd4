"""Tables from synthetic results: mean ± stderr, the paper's figure, Welch's p-value."""
import json
import math

import pytest
from scipy.stats import ttest_ind

from harness import store, table

SEQGAN = [8.70, 8.75, 8.72]
MLE = [9.05, 9.01, 9.08]


@pytest.fixture
def results(tmp_path):
    for method, values in (("seqgan", SEQGAN), ("mle", MLE)):
        for seed, value in enumerate(values):
            run = tmp_path / "paper" / "oracle" / method / f"seed-{seed}"
            store.write_json(run / "config.json", {"run_id": "paper", "dataset": "oracle",
                                                   "method": method, "seed": seed, "corpus": {}})
            store.write_json(run / "metrics.json", {"nll_oracle": value, "nll_test": value - 1})
    return tmp_path


def test_comparison_has_paper_figures_and_welch_p(results):
    rows = table.collect(results)
    assert set(rows.columns) == set(table.COLUMNS) and len(rows) == 12
    frame = table.comparison(rows, "oracle").set_index("method")
    assert list(frame.index) == ["mle", "seqgan"]
    assert frame.loc["mle", "nll_oracle (paper)"] == "9.038"
    assert frame.loc["seqgan", "nll_oracle (paper)"] == "8.736"
    mean, sem = rows[(rows.method == "mle") & (rows.metric == "nll_oracle")].value.agg(["mean", "sem"])
    assert frame.loc["mle", "nll_oracle"] == f"{mean:.4f} ± {sem:.4f}"
    expected = ttest_ind(SEQGAN, MLE, equal_var=False).pvalue
    assert frame.loc["mle", "p seqgan vs (Welch, nll_oracle)"] == f"{expected:.2g}"
    assert frame.loc["seqgan", "seeds"] == 3


def test_one_seed_gives_no_p_value():
    assert math.isnan(table.welch_p(table.pd.Series([1.0]), table.pd.Series([1.0, 2.0])))


def test_render_markdown_latex_csv(results):
    rows = table.collect(results)
    markdown = table.render(rows)
    assert markdown.startswith("### oracle (paper)") and "| seqgan" in markdown
    assert "Welch" in markdown
    assert "\\begin{tabular}" in table.render(rows, "latex")
    assert table.render(rows, "csv").splitlines()[0].startswith("run_id,dataset,data,method")


def test_paper_figures_are_data():
    paper = table.paper_figures()
    oracle = paper[(paper.dataset == "oracle") & (paper.metric == "nll_oracle")]
    assert dict(zip(oracle.method, oracle.value)) == {
        "random": 10.310, "mle": 9.038, "ss": 8.985, "pg-bleu": 8.946, "seqgan": 8.736,
        "real": 5.761}
    assert json.dumps(sorted(set(paper.dataset))) == '["obama", "oracle", "poems"]'
