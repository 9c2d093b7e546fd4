"""The device-dependent paths, exercised without a GPU: checkpoints read onto the CPU
whatever the run's device, a resume on another kind of device refused, the device kind and
precision in the run id, the shared snapshots' key and the table, the precision flags."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from harness import config, devices, store
from harness.api import HarnessError, RunContext
from harness.runner import refuse_other_device
from harness_plugins.mle import MleConfig, snapshot_path


def context(run_dir: Path, device: str, precision: str = "fp32", corpus=None) -> RunContext:
    return RunContext(corpus=corpus, config=None, device=torch.device(device), seed=0,
                      profile="default", run_dir=run_dir, evaluate_curve=lambda g, point: {},
                      log=logging.getLogger("test"), show_progress=False, precision=precision)


def parts() -> dict:
    module = torch.nn.Linear(3, 2)
    return {"model": module, "optimizer": torch.optim.Adam(module.parameters(), lr=0.1),
            "stream": torch.Generator().manual_seed(5)}


def test_a_checkpoint_resumes_through_the_device_path_with_its_random_states_on_the_cpu(tmp_path):
    """The run's device stands in as "meta": tensors mapped there hold no values, so a
    checkpoint read onto the run's device (as before) could not restore a random stream or
    a weight; read onto the CPU, every part resumes exactly."""
    saved = parts()
    saved["model"](torch.ones(1, 3)).sum().backward()
    saved["optimizer"].step()
    torch.rand(3, generator=saved["stream"])
    context(tmp_path, "meta").phase("phase", 3, saved, desc="phase").save(epoch=2)
    resumed, ctx = parts(), context(tmp_path, "meta")
    assert ctx.phase("phase", 3, resumed, desc="phase").first == 2
    assert ctx.resume_point["rng"]["torch"].device.type == "cpu"
    assert torch.equal(resumed["model"].weight, saved["model"].weight)
    assert torch.equal(torch.rand(4, generator=resumed["stream"]), torch.rand(4, generator=saved["stream"]))
    assert resumed["optimizer"].state_dict()["state"][0]["exp_avg"].equal(
        saved["optimizer"].state_dict()["state"][0]["exp_avg"])


def test_a_resume_on_another_kind_of_device_or_precision_is_refused(tmp_path):
    context(tmp_path, "cpu").phase("phase", 1, parts(), desc="phase").save(epoch=1)
    for device, precision in (("cuda", "fp32"), ("cpu", "bf16")):
        with pytest.raises(HarnessError, match="was saved on cpu .fp32.; this run is on"):
            context(tmp_path, device, precision).resume_point
    with pytest.raises(HarnessError, match="resume it with --device cpu"):
        refuse_other_device(tmp_path, "cuda", "fp32")
    refuse_other_device(tmp_path, "cpu", "fp32")  # the same device: resumes
    assert context(tmp_path, "cpu").resume_point["epoch"] == 1


def test_a_finished_run_of_another_device_is_neither_skipped_nor_reused(tmp_path):
    store.write_json(tmp_path / store.CONFIG, {"device": "cpu", "run_id": "default", "seed": 0,
                                               "dataset": "tiny", "method": "mle",
                                               "profile": "default"})
    store.write_json(tmp_path / store.METRICS, {"nll_oracle": 9.0})
    with pytest.raises(HarnessError, match="holds a run made on cpu .fp32., not on cuda"):
        refuse_other_device(tmp_path, "cuda", "fp32")
    refuse_other_device(tmp_path, "cpu", "fp32")


def test_the_device_kind_and_precision_are_part_of_the_run_id():
    cpu = config.run_id_for("default", {})
    assert cpu == "default"  # CPU runs keep their ids
    ids = {cpu, config.run_id_for("default", {}, device="cuda"),
           config.run_id_for("default", {}, device="cuda", precision="tf32"),
           config.run_id_for("default", {}, device="cuda", precision="bf16")}
    assert len(ids) == 4
    assert config.run_id_for("default", {"epochs": "2"}, device="cuda") != \
        config.run_id_for("default", {"epochs": "2"})


def test_shared_work_and_the_mle_snapshot_key_depend_on_the_device(tmp_path):
    paths = {store.shared_dir(tmp_path, "oracle", 0, device, precision)
             for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "tf32"))}
    assert len(paths) == 3
    corpus = type("Corpus", (), {"info": {}, "name": "tiny"})()
    settings = MleConfig(epochs=2, batch_size=64, lr=0.01, grad_clip=5.0, emb_dim=32, hidden_dim=32,
                         shuffle=True, eval_every=1)
    snapshots = {snapshot_path(context(tmp_path, device, precision, corpus), settings, 2).name
                 for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16"))}
    assert len(snapshots) == 3


@pytest.mark.slow
def test_precision_is_for_cuda_and_recorded(cli, tiny_dataset):
    refused = cli("run", "-m", "mle", "-d", "tiny", "--device", "cpu", "--precision", "tf32")
    assert refused.exit_code == 2 and "applies to CUDA only" in refused.output
    assert not Path(os.environ["HARNESS_RESULTS"]).exists()  # nothing written
    with pytest.raises(HarnessError):
        devices.check_precision("fp16", "cuda")
    assert cli("-q", "run", "-m", "mle", "-d", "tiny", "--device", "cpu", "--set", "epochs=1"
               ).exit_code == 0
    run_dir = store.find_run(None, "mle", "tiny")[0]
    assert store.read_json(run_dir / store.CONFIG)["precision"] == "fp32"
    table = cli("table")
    assert "tiny (default-" in table.output and "computed on cpu)" in table.output


def test_the_cublas_workspace_is_set_before_cuda_starts():
    assert os.environ.get(devices.CUBLAS_WORKSPACE[0]) == devices.CUBLAS_WORKSPACE[1]
    cpu = devices.describe(torch.device("cpu"))
    assert cpu["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_row_spans_cover_the_rows_in_whole_chunks_and_leave_the_last_short_chunk_alone():
    from harness.devices import row_spans
    assert row_spans(1000, 128, 300) == [slice(0, 256), slice(256, 512), slice(512, 768),
                                         slice(768, 896), slice(896, 1000)]
    assert row_spans(1000, 128, 5000) == [slice(0, 896), slice(896, 1000)]
    assert row_spans(1024, 128, 5000) == [slice(0, 1024)]
    assert row_spans(100, 128, 5000) == [slice(0, 100)]
    assert row_spans(0, 128, 5000) == []
    assert row_spans(1000, 128, 1) == [slice(i, min(i + 128, 1000)) for i in range(0, 1000, 128)]
