"""Plot styles: every method has a look of its own, the same in every figure."""
from __future__ import annotations

from harness import plots
from harness.plugins import registry


def looks(styles: dict[str, dict]) -> set[tuple]:
    return {tuple(sorted(style.items())) for style in styles.values()}


def test_every_registered_method_gets_a_distinct_style():
    methods = list(registry().methods)
    styles = plots.method_styles(methods)
    assert len(methods) >= 12 and len(looks(styles)) == len(methods)
    # Colour and dash alone tell them apart too: a legend's marker is small.
    assert len({(style["color"], style["linestyle"]) for style in styles.values()}) == len(methods)


def test_a_method_looks_the_same_in_every_plot():
    everyone = plots.method_styles(registry().methods)
    assert plots.method_styles(["seqgan"]) == {"seqgan": everyone["seqgan"]}
    # Results of plugins not installed here still get looks of their own.
    some = plots.method_styles(["mle", "not-installed-a", "not-installed-b"])
    assert some["mle"] == everyone["mle"] and len(looks(some)) == 3


def test_the_first_280_styles_differ():
    assert len(looks({str(i): plots.style(i) for i in range(280)})) == 280
