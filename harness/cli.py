"""The ``harness`` command line: thin wrappers over the library.

Plugins add commands through the ``register_commands`` hook, and every executor's own
options join ``harness run``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from harness import config, devices, store
from harness.api import Dataset, HarnessError, Interrupted, Method
from harness.commands import (SEED, Bounded, finished_run, results_option, run_corpus,
                              run_options, user_errors)
from harness.download import MIRROR_ENV

log = logging.getLogger("harness")
_console = logging.StreamHandler(sys.stderr)
_console.setFormatter(logging.Formatter("%(message)s"))


@click.group()
@click.version_option(package_name="harness")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors, no progress bars.")
@click.pass_context
def main(ctx: click.Context, quiet: bool) -> None:
    """Train and compare sequence generators the way the SeqGAN paper did."""
    ctx.obj = {"quiet": quiet}
    if _console not in log.handlers:
        log.addHandler(_console)
    _console.stream = sys.stderr  # where it is now (a test runner may have swapped it)
    _console.setLevel(logging.WARNING if quiet else logging.INFO)
    log.setLevel(logging.INFO)  # a run's run.log keeps everything, quiet or not


@main.command(name="list")
def list_() -> None:
    """Methods, data sets, profiles, executors and any plugin that failed to load."""
    from harness.plugins import load_errors, registry

    found = registry()
    width = max(map(len, found.plugin_of.values()), default=0)
    for kind, title, items in (("method", "methods", found.methods),
                               ("dataset", "data sets", found.datasets),
                               ("executor", "executors", found.executors),
                               ("logger", "loggers (--log-to)", found.loggers)):
        click.echo(f"{title}:")
        for name, item in items.items():
            click.echo(f"  {name:<10} {found.plugin_of[f'{kind}:{name}']:<{width}}  {_summary(item)}")
    click.echo("profiles: " + ", ".join(config.known_profiles(found.methods.values())))
    if load_errors:
        click.echo("broken plugins (skipped):")
        for plugin, error in load_errors.items():
            click.echo(f"  {plugin}: {error}")


def _summary(item) -> str:
    """The first line of what the item says of itself (a data set's description, else its
    class's docstring, else its module's), with a data set's own settings for the methods
    and a method's profiles."""
    extra, doc = "", type(item).__doc__ or sys.modules[type(item).__module__].__doc__ or ""
    if isinstance(item, Dataset):
        doc = item.description or doc
        own = ", ".join(f"{k}={v}" for k, v in item.method_settings.items())
        extra = f" [default profile: {own}]" if own else ""
    if isinstance(item, Method):
        from harness.training import takes_architecture

        profiles = config.profiles_of(item)
        if len(profiles) > len(config.BASE_PROFILES):
            extra = f" [profiles: {', '.join(profiles)}]"
        if item.reference is None and not takes_architecture(item):
            extra += " [its own generator: --set architecture does not apply]"
    return (doc.strip().splitlines()[0] if doc.strip() else "") + extra


@main.command()
@click.option("-m", "--method", "methods", multiple=True, help="Method to train (repeatable).")
@click.option("-d", "--dataset", "datasets", multiple=True, help="Data set (repeatable).")
@click.option("--all", "run_all", is_flag=True, help="Every method on every data set it supports.")
@click.option("--profile", default="default", show_default=True,
              help="default (CPU-sized), paper (the paper's settings), or a method's own.")
@click.option("--seed", "seeds", type=SEED, multiple=True, help="Seed (repeatable); default 0.")
@click.option("--seeds", "n_seeds", type=Bounded(1, config.MAX_SEED_COUNT),
              help="Use seeds 0..K-1.")
@click.option("--device", default="auto", show_default=True,
              help="auto (a GPU where this machine has one), cpu or cuda; part of the run id.")
@click.option("--precision", type=click.Choice(devices.PRECISIONS), default="fp32",
              show_default=True, help="On CUDA: fp32, or opt into tf32 or bf16 (recorded; part "
                                      "of the run id).")
@click.option("--threads", type=Bounded(min=1),
              help="torch CPU threads per run (recorded; default: torch's choice).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Override a hyper-parameter (repeatable).")
@click.option("--sweep", metavar="T1,T2,...",
              help="Temperatures of the quality-diversity sweep [default: 0.3 to 2.0, ten].")
@click.option("--run-id", help="Results sub-directory; default: the profile (plus a hash of "
                               "--set and --sweep).")
@click.option("--log-to", metavar="NAME[,NAME]",
              help="Also log each run to these trackers: tensorboard, mlflow, a plugin's.")
@results_option
@click.option("--data-mirror", envvar=MIRROR_ENV,
              help=f"Local copy of the corpora, laid out as the downloads are (seqgan_oracle/, "
                   f"chinese_poems/, obama_speeches/) [env {MIRROR_ENV}].")
@click.option("--executor", "executor_name", default="local", show_default=True,
              help="Who runs the runs: local (here, one after another), slurm, or a plugin's.")
@click.option("--wait", "wait_for_jobs", is_flag=True,
              help="With an executor that hands the runs on: wait for them, then print the tables.")
@click.pass_context
@user_errors
def run(ctx, methods, datasets, run_all, profile, seeds, n_seeds, device, precision, threads, settings,
        sweep, run_id, log_to, results, data_mirror, executor_name, wait_for_jobs,
        **executor_values) -> None:
    """Train methods on data sets, evaluate them and store the results."""
    if not run_all and not (methods and datasets):
        raise HarnessError("name a method and a data set (-m METHOD -d DATASET), or use --all")
    from harness import executors, training
    from harness.plan import RunOptions, RunSpec, plan
    from harness.plugins import registry

    seeds = list(seeds) or (list(range(n_seeds)) if n_seeds else [0])
    profile = config.canonical_profile(profile)
    parsed = config.parse_settings(settings)
    specs = plan(list(methods) or None, list(datasets) or None, seeds, profile)
    config.check_settings([registry().methods[m] for m in sorted({s.method for s in specs})] +
                          [registry().dataset(d) for d in sorted({s.dataset for s in specs})] +
                          [training.SHARED_GENERATOR], parsed)
    temperatures = config.parse_temperatures(sweep) if sweep else None
    device = devices.device_kind(device)  # auto: this machine's, so the run id can say it
    devices.check_precision(precision, device)
    options = RunOptions(run_id=run_id or config.run_id_for(profile, parsed, temperatures,
                                                            device, precision),
                         results=results, settings=parsed, device=device, precision=precision,
                         mirror=data_mirror,
                         threads=threads, show_progress=not ctx.obj["quiet"],
                         log_to=tuple(filter(None, (log_to or "").split(","))),
                         **({"sweep": temperatures} if temperatures else {}))
    executor = executors.get(executor_name)
    try:
        failures = executors.submit(specs, executor,
                                    executors.parse_options(executor, executor_values), options)
    except (Interrupted, KeyboardInterrupt):
        click.echo("interrupted: the running method saved its checkpoint; run the same "
                   "command again to resume", err=True)
        ctx.exit(130)
    if not executor.runs_here:
        if not wait_for_jobs:
            click.echo(f"submitted; follow the runs with `harness status --run-id {options.run_id}`")
            return
        failures = [(RunSpec(r["method"], r["dataset"], r["seed"], profile), r["reason"])
                    for r in executors.wait(store.plan_path(results, options.run_id))
                    if r["state"] != "done"]
    if failures:
        click.echo(f"{len(failures)} of {len(specs)} runs failed:", err=True)
        for spec, reason in failures:
            click.echo(f"  {spec.method} on {spec.dataset}, seed {spec.seed}: {reason}", err=True)
        ctx.exit(1)
    # This command's runs only: other run ids in the results (a committed reference set)
    # are `harness table`'s to show.
    _print_table(store.run_id_dir(results, options.run_id), "markdown", None)
    if len(specs) == 1:  # one run: where it is, and what it writes
        run_dir = options.run_dir(specs[0])
        shown = store.read_samples(run_dir, 3)
        click.echo(f"\n{run_dir} (samples.txt, generator.pt, ...); three of its samples:\n\n"
                   + "\n\n".join(shown))


EVERY_REFERENCE_SET = "*"


@main.command()
@results_option
@click.option("--reference", is_flag=False, flag_value=EVERY_REFERENCE_SET, metavar="[NAME]",
              help="A committed reference set instead of the results directory (no NAME: "
                   "all of them).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "latex"]),
              default="markdown", show_default=True)
@click.option("--baseline", help="The row every method is tested against (Welch's t-test); "
                                 "default: the one each data set names.")
@user_errors
def table(results, reference, fmt, baseline) -> None:
    """Tabulate the finished runs of the results directory, or of a committed reference set."""
    if reference is not None:
        results = store.reference_dir(None if reference == EVERY_REFERENCE_SET else reference)
    _print_table(results, fmt, baseline)


def _print_table(results, fmt: str, baseline: str | None) -> None:
    from harness.table import collect, render, unfinished

    rows = collect(results)
    skipped = unfinished(results)
    if skipped:
        click.echo(f"{len(skipped)} unfinished runs left out of the table:", err=True)
        for line in skipped:
            click.echo(f"  {line}", err=True)
    if rows.empty:
        raise HarnessError(f"no finished runs under {store.results_dir(results)}; "
                           f"run `harness run` first (the committed reference sets: "
                           f"`harness table --reference`)")
    click.echo(render(rows, fmt, baseline, store.results_dir(results)))


@main.command()
@results_option
@click.option("--run-id", help="Only this run id.")
@user_errors
def status(results, run_id) -> None:
    """Each planned run: done, running, queued, failed (why), interrupted or missing."""
    import pandas as pd

    from harness.plan import Plan
    from harness.run_state import STATES, run_states

    paths = store.plan_paths(results, run_id)
    if not paths:
        raise HarnessError(f"no plan under {store.results_dir(results)}"
                           + (f" for run id {run_id}" if run_id else "") + "; run `harness run` first")
    for path in paths:
        plan = Plan.load(path)
        rows = pd.DataFrame(run_states(plan))
        counts = rows.state.value_counts()
        click.echo(f"### {plan.run_id} ({plan.executor}): " + ", ".join(
            f"{counts[s]} {s}" for s in STATES if s in counts))
        click.echo(rows.to_markdown(index=False) + "\n")


@main.command()
@run_options()
@click.option("-n", "count", default=5, show_default=True, help="How many to show.")
@user_errors
def samples(method, dataset, seed, run_id, results, count) -> None:
    """Print generated sequences of a finished run (poems as four lines of five)."""
    run_dir = finished_run(results, method, dataset, seed, run_id)
    shown = store.read_samples(run_dir, count)
    click.echo("\n\n".join(shown))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-n", "count", default=10, show_default=True, help="How many sequences to draw.")
@click.option("--temperature", default=1.0, show_default=True,
              help=f"From {config.MIN_TEMPERATURE:g} to {config.MAX_TEMPERATURE:g}.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the draw.")
@click.option("--data-mirror", envvar=MIRROR_ENV, help="Local copy of the corpora.")
@user_errors
def generate(run_dir, count, temperature, seed, data_mirror) -> None:
    """Draw fresh sequences from a finished run's saved generator."""
    import torch

    from harness import load_generator

    config.check_temperature(temperature)
    corpus = run_corpus(Path(run_dir), data_mirror)
    generator = load_generator(run_dir, corpus=corpus)
    with torch.no_grad():
        drawn = generator.sample(count, temperature, torch.Generator().manual_seed(seed))
    click.echo("\n\n".join(corpus.show(drawn)))


@main.command()
@results_option
@click.option("--out", type=click.Path(), help="Where the PNGs go [default: RESULTS/plots].")
@user_errors
def plot(results, out) -> None:
    """Draw learning curves (the paper's Figure 2) and quality-diversity charts."""
    from harness.plots import learning_curves, quality_diversity

    out = Path(out) if out else store.plots_dir(results)
    written = learning_curves(results, out) + quality_diversity(results, out)
    if not written:
        raise HarnessError(f"no finished runs with curves under {store.results_dir(results)}")
    for path in written:
        click.echo(str(path))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data-mirror", envvar=MIRROR_ENV, help="Local copy of the corpora.")
@click.option("--device", help="Re-run on this device [default: the recorded kind].")
@click.option("--exact", is_flag=True, help="Demand bit-for-bit equality (the same machine and "
                                            "threads give it).")
@click.option("--cross-device", is_flag=True,
              help="Allow a re-run on another kind of device than the recorded one.")
@user_errors
def verify(run_dir, data_mirror, device, exact, cross_device) -> None:
    """Re-run a finished run and judge each metric: identical, within noise or outside
    (exit 0 when the run verifies, 1 when it does not)."""
    from harness.verify import verify as repeat

    report = repeat(Path(run_dir), data_mirror, device, exact, cross_device)
    click.echo(_verify_table(report))
    if report.left_out:
        click.echo("\nnot compared (defined otherwise when recorded):\n" +
                   "\n".join(f"  {line}" for line in report.left_out))
    if report.environment and not all(r.verdict == "identical" for r in report.comparisons):
        click.echo("\nthe environments differ in: " + "; ".join(
            f"{key}: {a} (recorded) vs {b} (here)" for key, (a, b) in report.environment.items()))
    if report.conclusions:
        click.echo("\nthe table's conclusions that would change with the repeated run:\n" +
                   "\n".join(f"  {line}" for line in report.conclusions))
    elif not exact and not report.passed or report.count("within noise"):
        click.echo("\nno conclusion of the table (vs its baseline) changes with the repeated run")
    click.echo(report.summary())
    if not report.passed:
        sys.exit(1)


def _verify_table(report) -> str:
    import pandas as pd

    def units(row) -> str:
        if row.units is None:
            return ""
        return f"{row.units:.2f} (limit {row.limit:.2f}; {row.basis})"

    return pd.DataFrame([{"metric": r.metric, "recorded": repr(r.recorded),
                          "repeated": repr(r.repeated), "verdict": r.verdict,
                          "difference / noise": units(r)}
                         for r in report.comparisons]).to_markdown(index=False)


def _add_plugin_parts() -> None:
    """Every executor's options on ``run``; every plugin's commands."""
    from harness import executors, training
    from harness.plugins import plugin_manager, registry

    taken = {param.name for param in run.params}
    for executor in registry().executors.values():
        for param in executors.cli_options(executor):
            if param.name not in taken:
                run.params.append(param)
                taken.add(param.name)
    plugin_manager().hook.register_commands(cli=main)


_add_plugin_parts()
