"""Installed without -e and run from another directory, the harness still finds what it
ships as package data (the published figures, RelGAN's oracle) and tabulates committed
results."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import store

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = store.reference_dir("reference-cpu-2026-12-04")


@pytest.mark.slow
def test_a_regular_install_tabulates_the_committed_results_beside_the_paper(tmp_path):
    target = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    where = subprocess.run([sys.executable, "-c", "import harness, harness_datasets; "
                            "print(harness.__file__); print(harness_datasets.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert all(line.startswith(str(target)) for line in where.stdout.split())
    # RelGAN's oracle ships as package data too, and passes its checksum there.
    subprocess.run([sys.executable, "-c", "from harness_datasets.oracle_relgan import "
                    "relgan_oracle; relgan_oracle()"], cwd=tmp_path, env=env, check=True)
    shown = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                            "table", "--results", str(REFERENCE)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "Beside the published figures" in shown.stdout
    assert any(line.startswith("| mle ") and " 9.038 " in line for line in shown.stdout.splitlines())
    assert "Yu et al. 2017, Table 1" in shown.stdout
