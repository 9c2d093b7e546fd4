"""GPU smoke test and timings: every method runs, killed runs resume, repeats agree.

And how long the paper's profiles would take on this device.

In order, one line per check as it goes:

1. every method of ``harness list`` (``registry().methods``, installed plugins included)
   trained tiny on the oracle, ``harness -q run -m M -d oracle --device D --set ...`` with
   only the size settings M's ``Config`` has: pass/fail and seconds;
2. kill-and-resume of ``mle`` and ``seqgan``: the run SIGKILLed once its checkpoint.pt
   exists, the same command run again, its metrics.json compared bit for bit with the
   uninterrupted run of step 1 (timings aside; ``standard_errors`` too);
3. a repeat of ``mle`` and ``seqgan`` in another results directory, compared bit for bit;
4. ``harness verify`` of the MLE run: its exit code and last lines;
5. NLL-oracle of the authors' oracle on 10,000 of its own samples, fp32 and (CUDA) TF32;
6. timings of paper-size pieces: sampling 10,000 sequences, 1,000 discriminator steps,
   one adversarial generator batch (64 x 19 prefixes x 16 rollouts), one MLE epoch;
7. from those, an estimate of the training time per seed of ``--profile paper`` and
   ``--profile authors`` for MLE and SeqGAN on the oracle.

It ends with a JSON summary (``--out DIR/bench_gpu.json``, default a new directory under
the system temp dir) and exit code 0 when every check passed, 1 otherwise (the failures
listed), 2 when it cannot start (no mirror, no GPU).

    python benchmarks/bench_gpu.py --device cuda           # on a GPU machine: under 8 min
    python benchmarks/bench_gpu.py --device cpu --quick    # CI: mle, seqgan, pg-bleu, 2 cores
        [--out DIR] [--mirror DIR] [--threads N]

The oracle needs the mirrored corpora (``--mirror``, default $HARNESS_DATA_MIRROR or
../shared/corpora). ``--quick`` trains 1 epoch instead of 2, sweeps one temperature, scores
1,000 oracle samples, times 20 discriminator steps, sampling and the MLE epoch on 2,000
sequences (scaled to 10,000) and the adversarial batch with 8 rollouts (scaled to 16).

Steps 1-3 run as series side by side, each with ``--threads`` torch threads: A (MLE, the
methods that start from it, then step 4), A2 (the other methods), B (step 3), K (step 2).
A series is one Python process calling the CLI's ``main`` once per command, with exactly
the arguments above, so the oracle's 20,000 training and held-out sequences are sampled
once per process, not once per run (13 s of a 1-thread process on the 2-core machine); a
command that fails ends its process and the rest go on in a fresh one (a failure may
leave CUDA unusable). Step 1's seconds are each command's, the first of a series
including that sampling.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import torch

import harness  # noqa: F401  (sets CUBLAS_WORKSPACE_CONFIG before CUDA starts, as in a run)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
TIMINGS = ("train_seconds", "eval_seconds", "judge_lm_seconds")
QUICK_METHODS = ("mle", "seqgan", "pg-bleu")
KILLED = ("mle", "seqgan")
LANES = 4                      # series of runs at once at most (A, A2, B, K; A2 not in --quick)
COMMAND_LIMIT_S = {"cuda": 300, "cpu": 900}  # a command running longer is killed, failed
# Tiny settings, each passed to the methods whose Config has the key: 2 epochs (a kill
# after the first checkpoint lands mid-training), curve points at the start and the end
# only, small networks and critics, 2 adversarial batches.
TINY = {
    "epochs": 2, "pretrain_epochs": 2, "eval_every": 2, "emb_dim": 8, "hidden_dim": 8,
    "disc_negatives": 64, "disc_batch_size": 32, "disc_pretrain_rounds": 2,
    "ranker_negatives": 64, "ranker_pretrain_rounds": 2, "ref_size": 4, "comparison_size": 8,
    "adv_batches": 2, "adv_eval_every": 2, "n_rollouts": 2, "adv_batch_size": 16,
    "prefixes": 4, "samples_per_prefix": 2, "stage_batches": 1, "adv_epochs": 1,
    "adv_steps": 2, "head_size": 4, "disc_emb_dim": 16, "num_rep": 4, "disc_filters": 8,
    "disc_hidden": 16, "latent_dim": 4, "iw_samples": 2, "active_units_batch": 64,
    "kl_anneal_steps": 10,
}
QUICK = {"epochs": 1, "pretrain_epochs": 1, "eval_every": 1}  # an epoch is 10 s on 1 core
SWEEP = {False: "0.5,1,2", True: "1"}                          # by --quick

print_lock = threading.Lock()
workers: set[subprocess.Popen] = set()  # the live worker processes, killed if this one ends


def say(line: str = "") -> None:
    with print_lock:
        print(line, flush=True)


# --- the harness runs (steps 1-4) ---------------------------------------------------------

def tiny_settings(method, quick: bool) -> list[str]:
    """``key=value`` for the tiny settings that ``method``'s Config has and accepts."""
    config = getattr(method, "Config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return []
    names = {f.name for f in dataclasses.fields(config)}
    values = {k: str(v) for k, v in {**TINY, **(QUICK if quick else {})}.items() if k in names}
    if not accepted(method, values):  # a plugin whose Config checks other ranges
        values = {k: v for k, v in values.items() if accepted(method, {k: v})}
    return [f"{k}={v}" for k, v in values.items()]


def accepted(method, values: dict[str, str]) -> bool:
    from harness.config import resolve

    try:
        resolve(method, "default", values)
        return True
    except Exception:
        return False


def run_args(method: str, settings: list[str], results: Path, args) -> list[str]:
    command = ["-q", "run", "-m", method, "-d", "oracle", "--device", args.device,
               "--results", str(results), "--threads", str(args.run_threads),
               "--sweep", SWEEP[args.quick]]
    for setting in settings:
        command += ["--set", setting]
    return command


def run_dir(results: Path, method: str) -> Path | None:
    found = sorted(results.glob(f"*/oracle/{method}/seed-0"))
    return found[0] if len(found) == 1 else None


def read_metrics(results: Path, method: str) -> dict | None:
    directory = run_dir(results, method)
    if directory is None or not (directory / "metrics.json").exists():
        return None
    return json.loads((directory / "metrics.json").read_text())


def worker(spec_path: str) -> None:
    """Run harness CLI commands one after another in this process (see the docstring)."""
    from harness.cli import main as cli

    spec = json.loads(Path(spec_path).read_text())
    for command in spec["commands"]:
        args = command["args"]
        if "--threads" in args:
            # From the start: `harness run` loads the data set (the oracle's 20,000 samples)
            # in its preflight, before --threads applies, with torch's default threads, which
            # spin against each other on a busy machine (5x slower on the 2-core one). The
            # samples are the same either way (row by row).
            torch.set_num_threads(int(args[args.index("--threads") + 1]))
        start = time.perf_counter()
        with open(command["log"], "w") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            code = call_cli(cli, [expand(arg) for arg in args])
        result = {"name": command["name"], "rc": code,
                  "seconds": round(time.perf_counter() - start, 2)}
        with open(spec["results"], "a") as out:
            out.write(json.dumps(result) + "\n")
        if code != 0:
            return  # the rest in a fresh process: a failure may leave state behind (CUDA)


def expand(arg: str) -> str:
    """``glob:PATTERN`` as the one path it matches (a run directory known only once the
    run exists); anything else as it is."""
    if not arg.startswith("glob:"):
        return arg
    found = glob.glob(arg[len("glob:"):])
    return found[0] if len(found) == 1 else arg


def call_cli(cli, args: list[str]) -> int:
    try:
        cli(args, prog_name="harness")
    except SystemExit as done:
        code = done.code
        return 0 if code is None else code if isinstance(code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def launch(name: str, commands: list[dict], out: Path, env: dict, on_result=None,
           kill_when: str | None = None) -> dict:
    """A worker process for ``commands`` ({name, args}); with ``kill_when`` (a glob), SIGKILL
    it as soon as a file matches. Returns its exit code, whether it was killed, and one
    result ({name, rc, seconds}) per finished command."""
    logs = out / "logs"
    spec = {"results": str(logs / f"{name}.jsonl"), "commands": [
        {**c, "log": str(logs / f"{c['name'].replace('/', '-')}.log")} for c in commands]}
    Path(spec["results"]).unlink(missing_ok=True)
    (logs / f"{name}.json").write_text(json.dumps(spec, indent=1))
    with open(logs / f"{name}.worker.log", "w") as log:
        process = subprocess.Popen([sys.executable, str(SCRIPT), "--worker",
                                    str(logs / f"{name}.json")], stdout=log, stderr=log,
                                   env=env, cwd=REPO)
        workers.add(process)
        results, killed, timed_out = [], False, False
        limit = COMMAND_LIMIT_S["cuda" if any("cuda" in c["args"] for c in commands) else "cpu"]
        deadline = time.monotonic() + limit
        while process.poll() is None:
            before = len(results)
            results = report(spec["results"], results, on_result)
            if len(results) > before:
                deadline = time.monotonic() + limit
            if kill_when and not killed and glob.glob(kill_when):
                process.kill()  # SIGKILL
                killed = True
            if time.monotonic() > deadline and not timed_out:
                process.kill()
                timed_out = True
            time.sleep(0.05)
        workers.discard(process)
    results = report(spec["results"], results, on_result)
    return {"rc": process.returncode, "killed": killed, "timed_out": timed_out,
            "results": results}


def report(path: str, seen: list[dict], on_result) -> list[dict]:
    """The results in ``path``; ``on_result`` for each one not seen before."""
    if not os.path.exists(path):
        return seen
    lines = Path(path).read_text().splitlines()
    complete = [json.loads(line) for line in lines if line.endswith("}")]
    for result in complete[len(seen):]:
        if on_result:
            on_result(result)
    return complete


def run_series(name: str, commands: list[dict], out: Path, env: dict, on_result=None) -> dict:
    """Every command's result, relaunching a fresh worker after a failure or a crash."""
    found: dict[str, dict] = {}
    pending = list(commands)
    attempt = 0
    while pending:
        attempt += 1
        done = launch(f"{name}-{attempt}", pending, out, env, on_result)
        for result in done["results"]:
            found[result["name"]] = result
        pending = [c for c in pending if c["name"] not in found]
        if pending and done["rc"] != 0:  # the process died in the next command
            crashed = {"name": pending[0]["name"], "rc": done["rc"], "seconds": None,
                       "crashed": "timed out" if done["timed_out"] else
                       f"worker exit code {done['rc']}"}
            found[crashed["name"]] = crashed
            if on_result:
                on_result(crashed)
            pending = pending[1:]
    return found


def kill_and_resume(out: Path, env: dict, commands: dict[str, dict]) -> dict:
    """Step 2 in results directory K: the MLE run killed after its first checkpoint; the
    same command again, then SeqGAN's, killed after its first checkpoint; then SeqGAN's
    again to finish. Returns, per method, what happened."""
    results = out / "runs" / "K"
    mle, seqgan = commands["mle"], commands["seqgan"]
    outcome = {}
    first = launch("K-1", [mle], out, env, kill_when=checkpoint_glob(results, "mle"))
    outcome["mle"] = killed_state(first, results, "mle")
    second = launch("K-2", [mle, seqgan], out, env,
                    kill_when=checkpoint_glob(results, "seqgan"))
    outcome["mle"]["resumed_rc"] = next((r["rc"] for r in second["results"]
                                         if r["name"] == mle["name"]), second["rc"])
    outcome["seqgan"] = killed_state(second, results, "seqgan")
    third = run_series("K-3", [seqgan], out, env)
    outcome["seqgan"]["resumed_rc"] = third[seqgan["name"]]["rc"]
    return outcome


def checkpoint_glob(results: Path, method: str) -> str:
    return str(results / "*" / "oracle" / method / "seed-0" / "checkpoint.pt")


def killed_state(done: dict, results: Path, method: str) -> dict:
    """Whether the kill hit the run before it finished, and where its checkpoint was."""
    finished = read_metrics(results, method) is not None
    state = {"killed": done["killed"] and done["rc"] == -signal.SIGKILL and not finished,
             "worker_rc": done["rc"], "finished_before_kill": finished}
    paths = glob.glob(checkpoint_glob(results, method))
    if paths:
        try:
            saved = torch.load(paths[0], map_location="cpu", weights_only=True)["state"]
            state["at"] = {k: v for k, v in saved.items()
                           if k in ("phase", "epoch", "round", "batch")}
        except Exception as error:  # only informative
            state["at"] = f"unreadable: {error!r}"
    return state


def without_timings(metrics: dict) -> dict:
    return {k: without_timings(v) if isinstance(v, dict) else v
            for k, v in metrics.items() if k not in TIMINGS}


def flat(metrics: dict, prefix: str = "") -> dict:
    items = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            items.update(flat(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def differing(a: dict, b: dict) -> list[str]:
    """Metric names (nested as a.b) whose values are not bit-for-bit equal (NaN equals NaN)."""
    a, b = flat(without_timings(a)), flat(without_timings(b))

    def same(x, y) -> bool:
        nan = isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
        return nan or (x == y and type(x) is type(y))

    return sorted(k for k in set(a) | set(b) if k not in a or k not in b or not same(a[k], b[k]))


def compare(label: str, reference: dict | None, other: dict | None) -> dict:
    if reference is None or other is None:
        missing = "uninterrupted" if reference is None else label
        return {"identical": False, "detail": f"no metrics.json from the {missing} run"}
    differ = differing(reference, other)
    n = len(flat(without_timings(reference)))
    if not differ:
        return {"identical": True, "metrics": n, "detail": f"all {n} metrics identical"}
    return {"identical": False, "metrics": n, "differ": differ,
            "detail": f"{len(differ)} of {n} metrics differ: {', '.join(differ[:8])}"
                      + (" ..." if len(differ) > 8 else "")}


def last_lines(path: Path, n: int = 6) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-n:]


def harness_runs(args, env: dict, checks: list[dict], summary: dict) -> None:
    """Steps 1 to 4: the series of runs side by side (threads waiting on processes), then
    the comparisons."""
    from harness.plugins import registry

    out, methods = args.out, registry().methods
    names = [m for m in methods if not args.quick or m in QUICK_METHODS]
    declined = [m for m in names if not getattr(methods[m], "supports", lambda d: True)("oracle")]
    names = sorted((m for m in names if m not in declined), key=lambda m: m != "mle")
    settings = {m: tiny_settings(methods[m], args.quick) for m in names}
    # Series A: MLE, then the methods that start from its result (reusing its pre-training);
    # series A2 beside it: the others. B and K: steps 3 and 2.
    home = {m: "A" if m == "mle" or "mle" in methods[m].starts_from else "A2"
            for m in names}
    for role in ("A", "A2", "B", "K"):
        (out / "runs" / role).mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)

    def command(role: str, method: str) -> dict:
        return {"name": f"{role}/{method}",
                "args": run_args(method, settings[method], out / "runs" / role, args)}

    say(f"[1] tiny runs on {args.device}: {', '.join(names)} ({args.run_threads} torch "
        f"threads each, up to {LANES} series of runs at once)"
        + (f"; declining the oracle: {', '.join(declined)}" if declined else ""))
    verify = {"name": "A/verify-mle", "args": [  # found once the MLE run exists
        "-q", "verify", f"glob:{out / 'runs' / 'A' / '*' / 'oracle' / 'mle' / 'seed-0'}",
        "--device", args.device]}
    on_result = step1_reporter(out, settings, home, checks, summary)
    lanes = run_lanes({
        "A": lambda: run_series("A", [command("A", m) for m in names if home[m] == "A"]
                                + [verify], out, env, on_result),
        "A2": lambda: run_series("A2", [command("A2", m) for m in names if home[m] == "A2"],
                                 out, env, on_result),
        "B": lambda: run_series("B", [command("B", m) for m in KILLED], out, env),
        "K": lambda: kill_and_resume(out, env, {m: command("K", m) for m in KILLED})})
    for name, error in lanes.items():
        if name.endswith("_error"):
            checks.append({"step": 0, "check": f"series {name[:-6]}", "passed": False})
            say(f"    series {name[:-6]} raised: {error}")
    report_kill_resume(out, lanes.get("K", {}), checks, summary)
    report_repeats(out, checks, summary)
    report_verify(out, lanes.get("A", {}).get(verify["name"]), args.device, checks, summary)


def run_lanes(lanes: dict) -> dict:
    """Each function in a thread of its own; their results by name (``NAME_error``: the
    traceback of one that raised)."""
    found: dict = {}

    def run(name: str, fn) -> None:
        try:
            found[name] = fn()
        except Exception:
            found[f"{name}_error"] = traceback.format_exc(limit=3)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in lanes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def step1_reporter(out: Path, settings: dict, home: dict, checks: list[dict], summary: dict):
    """The callback that prints step 1's line for each tiny run as it finishes."""
    summary["tiny_runs"] = tiny = {}

    def report_run(result: dict) -> None:
        method = result["name"].split("/", 1)[1]
        if method not in settings:
            return  # verify, reported as step 4
        metrics = read_metrics(out / "runs" / home[method], method)
        passed = result["rc"] == 0 and metrics is not None
        log = out / "logs" / f"{home[method]}-{method}.log"
        tiny[method] = {"passed": passed, "rc": result["rc"], "seconds": result["seconds"],
                        "settings": settings[method], "log": str(log),
                        **{k: metrics[k] for k in TIMINGS if metrics and k in metrics},
                        **({"crashed": result["crashed"]} if "crashed" in result else {})}
        detail = (f"train {metrics.get('train_seconds', 0):.1f} s, eval "
                  f"{metrics.get('eval_seconds', 0):.1f} s" if metrics else
                  f"exit code {result['rc']}; see {log}")
        seconds = f"{result['seconds']:6.1f} s" if result["seconds"] is not None else "     - s"
        say(f"    {method:<10} {'ok' if passed else 'FAILED':<6} {seconds} ({detail})")
        checks.append({"step": 1, "check": f"tiny run {method}", "passed": passed})

    return report_run


def report_kill_resume(out: Path, outcome: dict, checks: list[dict], summary: dict) -> None:
    say("[2] kill-and-resume (SIGKILL once checkpoint.pt exists, the same command again)")
    summary["kill_resume"] = {}
    for method in KILLED:
        state = outcome.get(method, {"killed": False})
        result = compare("resumed", read_metrics(out / "runs" / "A", method),
                         read_metrics(out / "runs" / "K", method))
        passed = bool(state.get("killed") and state.get("resumed_rc") == 0
                      and result["identical"])
        where = state.get("at", "?")
        if isinstance(where, dict):
            where = " ".join(f"{k} {v}" for k, v in where.items())
        killed = (f"killed at checkpoint {where}" if state.get("killed") else
                  "NOT killed (it finished first)" if state.get("finished_before_kill") else
                  f"NOT killed (worker exit code {state.get('worker_rc')})")
        say(f"    {method:<10} {'ok' if passed else 'FAILED':<6} {killed}; resumed with exit "
            f"code {state.get('resumed_rc')}; vs uninterrupted: {result['detail']}")
        summary["kill_resume"][method] = {**state, **result, "passed": passed}
        checks.append({"step": 2, "check": f"kill-and-resume {method}", "passed": passed})


def report_repeats(out: Path, checks: list[dict], summary: dict) -> None:
    say("[3] repeat in another results directory, compared bit for bit")
    summary["repeat"] = {}
    for method in KILLED:
        result = compare("repeated", read_metrics(out / "runs" / "A", method),
                         read_metrics(out / "runs" / "B", method))
        say(f"    {method:<10} {'ok' if result['identical'] else 'FAILED':<6} {result['detail']}")
        summary["repeat"][method] = {**result, "passed": result["identical"]}
        checks.append({"step": 3, "check": f"repeat {method}", "passed": result["identical"]})


def report_verify(out: Path, verified: dict | None, device: str, checks: list[dict],
                  summary: dict) -> None:
    directory = run_dir(out / "runs" / "A", "mle")
    say(f"[4] harness verify {directory} --device {device}")
    lines = last_lines(out / "logs" / "A-verify-mle.log")
    rc = verified["rc"] if verified else None
    for line in lines:
        say(f"    | {line}")
    say(f"    exit code {rc}")
    summary["verify"] = {"run_dir": str(directory), "rc": rc, "last_lines": lines,
                         "seconds": verified["seconds"] if verified else None}
    checks.append({"step": 4, "check": "verify mle", "passed": rc == 0})


# --- measurements in this process (steps 5-7) --------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device, fn, warm_up=None) -> float:
    """Seconds of ``fn()``; on CUDA after ``warm_up()`` (default: ``fn`` itself), the clock
    read only after synchronising."""
    if device.type == "cuda":
        (warm_up or fn)()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def configure_like_a_run(device: torch.device) -> None:
    """The numerical flags a harness run computes under."""
    from harness import devices

    devices.configure(device, "fp32")


def nll_oracle(args, device: torch.device, summary: dict) -> dict:
    """Step 5: the oracle's NLL of its own samples, fp32 and TF32 (CUDA); its seconds."""
    from harness.generator import mean_token_nll
    from harness_datasets.oracle import seqgan_oracle

    n = 1_000 if args.quick else 10_000
    oracle = seqgan_oracle(args.mirror).to(device)
    samples = oracle.sample(n, generator=torch.Generator(device=device).manual_seed(0))
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    result = {"samples": n}
    try:
        set_tf32(False)
        values = {}
        seconds = clock(device, lambda: values.update(fp32=mean_token_nll(oracle, samples)),
                        lambda: mean_token_nll(oracle, samples[:64]))
        result.update(fp32=values["fp32"], fp32_seconds=round(seconds, 3))
        say(f"    fp32: {values['fp32']:.6f} nats/token ({n:,} samples, {seconds:.2f} s)")
        if device.type == "cuda":
            set_tf32(True)
            result["tf32"] = mean_token_nll(oracle, samples)
            result["difference"] = result["tf32"] - result["fp32"]
            say(f"    tf32: {result['tf32']:.6f}; tf32 - fp32 = {result['difference']:+.3e}")
        else:
            say("    tf32: does not apply on the CPU (fp32 only)")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    summary["nll_oracle"] = result
    return result


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def timings(args, device: torch.device, summary: dict) -> dict:
    """Step 6: paper-size pieces, each per its unit (10,000 sequences, one step, one batch)."""
    sys.path.insert(0, str(SCRIPT.parent))
    from bench_adversarial import adversarial_step
    from harness.generator import LSTMGenerator
    from harness.training import mle_epoch
    from harness_plugins.adversarial import PAPER, PAPER_L2, Discriminator, Rollout
    from harness_plugins.adversarial import train_discriminator

    vocab, length, batch = 5_000, 20, 64
    # --quick: 8 rollouts, scaled to 16 (the cost is the rollouts' rows; over 5,000 rows,
    # the vocabulary, the discriminator scores them by look-up as at 16)
    rollouts = 8 if args.quick else 16
    n = 2_000 if args.quick else 10_000
    d_steps = 20 if args.quick else 1_000
    torch.manual_seed(0)
    cpu_rng = torch.Generator().manual_seed(0)
    rng = torch.Generator(device=device).manual_seed(0)
    gen = LSTMGenerator(vocab, length, 32, 32).to(device)
    data = torch.randint(0, vocab, (n, length), generator=cpu_rng)  # on the CPU, as a corpus
    found = {}

    def record(key: str, what: str, seconds: float, units: float, unit: str) -> None:
        found[key] = {"what": what, "seconds": round(seconds, 4), "units": units,
                      "unit": unit, "per_unit": seconds / units}
        say(f"    {what:<44} {seconds:8.3f} s  ({seconds / units:.4g} s per {unit})")

    record("sample", f"sample {n:,} sequences",
           clock(device, lambda: gen.sample(n, generator=rng)), n / 10_000, "10,000 sequences")
    g_opt = torch.optim.Adam(gen.parameters(), lr=0.01)
    record("mle_epoch", f"MLE epoch, {n:,} sequences, batch {batch}",
           clock(device, lambda: mle_epoch(gen, data, g_opt, batch, 5.0, cpu_rng),
                 lambda: mle_epoch(gen, data[:4 * batch], g_opt, batch, 5.0, cpu_rng)),
           n / 10_000, "epoch of 10,000")
    disc = Discriminator(vocab, length, **PAPER).to(device)
    d_opt = torch.optim.Adam(disc.parameters(), lr=1e-4)
    half = d_steps * batch // 2
    real, fake = data.repeat(math.ceil(half / n), 1)[:half], torch.randint(
        0, vocab, (half, length), generator=cpu_rng)

    def d_train(count: int) -> None:
        rows = count * batch // 2
        train_discriminator(disc, d_opt, real[:rows], fake[:rows], 1, batch, PAPER_L2, cpu_rng)

    record("d_step", f"{d_steps:,} PAPER discriminator steps, batch {batch}",
           clock(device, lambda: d_train(d_steps), lambda: d_train(4)), d_steps, "step")
    rollout = Rollout(gen, 0.0)

    def rewards(sequences):
        return rollout.rewards(sequences, rollouts, disc, rng)

    record("adversarial_batch", f"adversarial batch {batch} x {length - 1} x {rollouts}",
           clock(device, lambda: adversarial_step(gen, g_opt, rollout, rewards, batch, rng)),
           rollouts / 16, f"batch of {batch} x {length - 1} x 16")
    summary["timings"] = found
    return found


def profile_config(method, profile: str):
    return dataclasses.replace(method.Config(), **getattr(method, "profiles", {}).get(profile, {}))


def curve_points(steps: int, every: int) -> int:
    """Learning-curve points of a phase: every ``every`` steps and the last."""
    return steps // every + (1 if steps % every else 0)


def projection(units: dict, nll: dict, summary: dict) -> list[dict]:
    """Step 7: the training seconds per seed that the measured units project."""
    from harness.plugins import registry

    try:
        from harness_datasets.oracle import AUTHORS_EVAL_SAMPLES as eval_n
    except ImportError:
        eval_n = 10_000
    methods = registry().methods
    t_epoch, t_sample = units["mle_epoch"]["per_unit"], units["sample"]["per_unit"]
    t_step, t_adv = units["d_step"]["per_unit"], units["adversarial_batch"]["per_unit"]
    t_nll = nll["fp32_seconds"] * 10_000 / nll["samples"]
    t_point = (t_sample + t_nll) * eval_n / 10_000
    rows = []
    for profile in ("paper", "authors"):
        mle = profile_config(methods["mle"], profile)
        mle_s = mle.epochs * t_epoch + (1 + curve_points(mle.epochs, mle.eval_every)) * t_point
        rows.append({"method": "mle", "profile": profile, "mle_epochs": mle.epochs,
                     "curve_points": 1 + curve_points(mle.epochs, mle.eval_every),
                     "hours": mle_s / 3600})
        sg = profile_config(methods["seqgan"], profile)
        pre = sg.pretrain_epochs * t_epoch + \
            (1 + curve_points(sg.pretrain_epochs, sg.eval_every)) * t_point
        rounds = sg.disc_pretrain_rounds + sg.adv_batches * sg.d_steps
        steps = sg.disc_epochs * math.ceil(2 * sg.disc_negatives / sg.disc_batch_size)
        disc_s = rounds * (t_sample * sg.disc_negatives / 10_000 + steps * t_step)
        adv_s = sg.adv_batches * sg.g_steps * t_adv * (sg.n_rollouts * sg.batch_size) / (16 * 64)
        points = curve_points(sg.adv_batches, sg.adv_eval_every)
        total = pre + disc_s + adv_s + points * t_point
        rows.append({"method": "seqgan", "profile": profile, "mle_epochs": sg.pretrain_epochs,
                     "d_rounds": rounds, "d_steps_per_round": steps,
                     "adv_batches": sg.adv_batches, "n_rollouts": sg.n_rollouts,
                     "disc_size": sg.disc_size, "curve_points":
                     1 + curve_points(sg.pretrain_epochs, sg.eval_every) + points,
                     "hours": total / 3600, "hours_after_pretraining": (total - pre) / 3600})
    summary["projection"] = {"rows": rows, "eval_samples": eval_n, "unit_seconds": {
        "mle_epoch": t_epoch, "sample_10k": t_sample, "nll_oracle_10k": t_nll,
        "d_step": t_step, "adversarial_batch_64x16": t_adv, "curve_point": t_point}}
    return rows


def show_projection(rows: list[dict], summary: dict) -> None:
    u = summary["projection"]["unit_seconds"]
    say("    an ESTIMATE from the unit times above (training only; the final evaluation, "
        "data loading and checkpoints not counted):")
    say(f"    MLE    = epochs x {u['mle_epoch']:.3g} s + curve points x {u['curve_point']:.3g} s "
        f"(sampling + NLL-oracle of {summary['projection']['eval_samples']:,})")
    say(f"    SeqGAN = MLE(pretrain_epochs) + (D pre-training rounds + adv batches x d_steps) x "
        f"(sample negatives + steps x {u['d_step']:.3g} s) + adv batches x "
        f"{u['adversarial_batch_64x16']:.3g} s x rollouts/16 + curve points")
    say(f"    {'method':<8} {'profile':<13} {'MLE ep.':>7} {'D rounds':>8} {'D steps/r':>9} "
        f"{'adv b.':>6} {'points':>6} {'hours':>8}")
    for row in rows:
        say(f"    {row['method']:<8} {row['profile']:<13} {row['mle_epochs']:>7} "
            f"{row.get('d_rounds', '-'):>8} {row.get('d_steps_per_round', '-'):>9} "
            f"{row.get('adv_batches', '-'):>6} {row['curve_points']:>6} {row['hours']:>8.2f}"
            + (f"  ({row['hours_after_pretraining']:.2f} after its MLE pre-training)"
               if "hours_after_pretraining" in row else ""))


# --- environment and main ----------------------------------------------------------------

def environment(device: torch.device) -> dict:
    """What a run records of its machine (``harness.environment.environment``: versions,
    CPU, kernels, math libraries; on CUDA the GPU and its flags), plus the device and the
    working tree's state."""
    from harness.environment import environment as recorded

    return {**recorded(device), "device": str(device),
            "git_changed_files": len((git("status", "--porcelain") or "").splitlines())}


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def default_mirror() -> Path:
    if os.environ.get("HARNESS_DATA_MIRROR"):
        return Path(os.environ["HARNESS_DATA_MIRROR"])
    outside = REPO.parent / "shared" / "corpora"
    inside = REPO / "shared" / "corpora"
    return inside if not outside.exists() and inside.exists() else outside


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu",
                    help="[cuda where there is one]")
    ap.add_argument("--quick", action="store_true",
                    help="mle, seqgan and pg-bleu only, 1 epoch, smaller measurements (CI)")
    ap.add_argument("--out", type=Path, help="where bench_gpu.json, the runs and their logs go "
                                             "[default: a new directory under the temp dir]")
    ap.add_argument("--mirror", type=Path, default=default_mirror(),
                    help="the mirrored corpora [$HARNESS_DATA_MIRROR or ../shared/corpora]")
    ap.add_argument("--threads", type=int, help="torch threads of every run and of the timings "
                                                "[runs: cores / 4, at least 1; timings: cores]")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    problem = check_args(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    started = time.perf_counter()
    device = torch.device(args.device)
    say(f"bench_gpu on {args.device}{' (quick)' if args.quick else ''}: results in {args.out}")
    summary = {"device": args.device, "quick": args.quick, "out": str(args.out),
               "mirror": str(args.mirror), "run_threads": args.run_threads,
               "environment": environment(device), "complete": False}
    checks: list[dict] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # ends the workers too (finally)
    try:
        run_checks(args, device, summary, checks, started)
        summary["complete"] = True
    except Exception:
        summary["error"] = traceback.format_exc()
        checks.append({"step": 0, "check": "bench_gpu itself", "passed": False})
        say(summary["error"])
    finally:
        for process in list(workers):
            process.kill()
        save(args, summary, checks, started)
    failed = summary["failed"]
    say(f"{'PASSED' if summary['passed'] else 'FAILED'}: {len(checks) - len(failed)} of "
        f"{len(checks)} checks passed in {summary['wall_seconds']:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else ""))
    say(f"summary: {args.out / 'bench_gpu.json'}")
    return 0 if summary["passed"] else 1


def check_args(args) -> str | None:
    """What stops the benchmark from starting (None: nothing); completes ``args``."""
    if args.device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: no CUDA device here; use --device cpu"
    if not (args.mirror / "seqgan_oracle" / "target_params.npz").exists():
        return (f"no corpus mirror at {args.mirror} (the oracle needs "
                f"seqgan_oracle/target_params.npz): give --mirror DIR")
    args.mirror = args.mirror.resolve()
    args.out = (args.out or Path(tempfile.mkdtemp(prefix="bench-gpu-"))).resolve()
    if (args.out / "runs").exists():  # finished runs would be skipped, not tested
        return f"--out {args.out} holds runs of an earlier bench_gpu; give a new directory"
    args.out.mkdir(parents=True, exist_ok=True)
    args.run_threads = args.threads or max(1, (os.cpu_count() or 1) // LANES)
    return None


def run_checks(args, device: torch.device, summary: dict, checks: list[dict],
               started: float) -> None:
    """Steps 1 to 7, the summary saved after each (a killed benchmark leaves what it had)."""
    env = {**os.environ, "HARNESS_DATA_MIRROR": str(args.mirror)}
    harness_runs(args, env, checks, summary)
    save(args, summary, checks, started)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    with contextlib.suppress(ImportError, AttributeError):
        from harness import memory

        memory.keep_freed_memory()  # as every run does: CPU timings like a run's
    configure_like_a_run(device)
    summary["environment"] = environment(device)  # with the threads and flags measured
    say(f"[5] NLL-oracle of the authors' oracle on its own samples "
        f"({summary['environment'].get('gpu') or summary['environment']['cpu_model']})")
    nll = measured(5, "nll-oracle", lambda: nll_oracle(args, device, summary), checks)
    save(args, summary, checks, started)
    say(f"[6] timings on {args.device} ({torch.get_num_threads()} torch threads"
        f"{'; each warmed up once' if args.device == 'cuda' else ''})")
    units = measured(6, "timings", lambda: timings(args, device, summary), checks)
    save(args, summary, checks, started)
    say("[7] projected training time per seed on the oracle")
    if nll and units:
        rows = measured(7, "projection", lambda: projection(units, nll, summary), checks)
        if rows:
            show_projection(rows, summary)


def save(args, summary: dict, checks: list[dict], started: float) -> None:
    failed = [c["check"] for c in checks if not c["passed"]]
    summary.update(checks=checks, failed=failed, passed=summary["complete"] and not failed,
                   wall_seconds=round(time.perf_counter() - started, 1))
    (args.out / "bench_gpu.json").write_text(json.dumps(summary, indent=1, default=str))


def measured(step: int, name: str, fn, checks: list[dict]):
    """``fn()``, a failed check (with the traceback shown) when it raises."""
    try:
        value = fn()
        checks.append({"step": step, "check": name, "passed": True})
        return value
    except Exception:
        say(traceback.format_exc())
        checks.append({"step": step, "check": name, "passed": False})
        return None


if __name__ == "__main__":
    sys.exit(main())
