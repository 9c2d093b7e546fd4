"""Every method's tiny run gives the very floats pinned in tests/pinned/tiny-runs.json
(``python tests/pinned_runs.py`` pins them; repin only for a change meant to move them,
and say so in its commit)."""
import json

import pytest

import pinned_runs


@pytest.mark.slow
def test_every_methods_tiny_run_gives_the_pinned_floats():
    pinned = json.loads(pinned_runs.PINNED.read_text())
    if pinned["environment"] != pinned_runs.environment():
        pytest.skip(f"pinned under {pinned['environment']}, this is {pinned_runs.environment()}: "
                    "other kernels may round differently")
    runs = pinned_runs.tiny_runs()
    assert sorted(runs) == sorted(pinned["runs"])
    moved = [method for method in runs if runs[method] != pinned["runs"][method]]
    assert not moved, f"these methods' tiny runs moved since {pinned['commit']}: {moved}"
