"""The ``harness`` command line: thin wrappers over the library."""
from __future__ import annotations

import functools
import logging
import sys

import click

from harness import config
from harness.api import HarnessError, Interrupted
from harness.download import MIRROR_ENV
from harness.runner import RESULTS_ENV, plan, results_dir

log = logging.getLogger("harness")


class UserError(click.ClickException):
    exit_code = 2


def user_errors(command):
    """Show a HarnessError as one line and exit with code 2, no traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except HarnessError as error:
            raise UserError(str(error)) from None
    return wrapper


@click.group()
@click.version_option(package_name="harness")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors, no progress bars.")
@click.pass_context
def main(ctx: click.Context, quiet: bool) -> None:
    """Train and compare sequence generators the way the SeqGAN paper did."""
    ctx.obj = {"quiet": quiet}
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)


@main.command(name="list")
def list_() -> None:
    """Methods, data sets, profiles and any plugin that failed to load."""
    from harness.plugins import load_errors, registry

    found = registry()
    width = max(map(len, found.plugin_of.values()), default=0)
    click.echo("methods:")
    for name, method in sorted(found.methods.items()):
        click.echo(f"  {name:<10} {found.plugin_of['method:' + name]:<{width}}  {_summary(method)}")
    click.echo("data sets:")
    for name, dataset in sorted(found.datasets.items()):
        click.echo(f"  {name:<10} {found.plugin_of['dataset:' + name]:<{width}}  {dataset.description}")
    click.echo("profiles: " + ", ".join(config.known_profiles(found.methods.values())))
    if load_errors:
        click.echo("broken plugins (skipped):")
        for plugin, error in load_errors.items():
            click.echo(f"  {plugin}: {error}")


def _summary(method) -> str:
    """The first line of the method's class docstring, else of its module's."""
    doc = type(method).__doc__ or sys.modules[type(method).__module__].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


@main.command()
@click.option("-m", "--method", "methods", multiple=True, help="Method to train (repeatable).")
@click.option("-d", "--dataset", "datasets", multiple=True, help="Data set (repeatable).")
@click.option("--all", "run_all", is_flag=True, help="Every method on every data set it supports.")
@click.option("--profile", default="default", show_default=True,
              help="default (CPU-sized) or paper (the paper's settings).")
@click.option("--seed", "seeds", type=int, multiple=True, help="Seed (repeatable); default 0.")
@click.option("--seeds", "n_seeds", type=click.IntRange(min=1), help="Use seeds 0..K-1.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Override a hyper-parameter (repeatable).")
@click.option("--run-id", help="Results sub-directory; default: the profile (plus a hash of --set).")
@click.option("--results", envvar=RESULTS_ENV, help=f"Results directory [env {RESULTS_ENV}; ./results].")
@click.option("--data-mirror", envvar=MIRROR_ENV,
              help=f"Local copy of the corpora, laid out like shared/corpora [env {MIRROR_ENV}].")
@click.option("--executor", default="local", show_default=True,
              help="local (here, one run after another), slurm, or a plugin's.")
@click.option("--partition", help="Slurm partition for the jobs.")
@click.option("--gpus-per-run", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--cpus-per-run", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--time", "time_min", default=60, show_default=True, type=click.IntRange(min=1),
              help="Minutes per job before the cluster requeues it (it resumes).")
@click.option("--mem-gb", type=click.FloatRange(min=0), help="Memory per job.")
@click.option("--wait", "wait_for_jobs", is_flag=True,
              help="With a cluster executor: wait for the jobs, then print the tables.")
@click.pass_context
@user_errors
def run(ctx, methods, datasets, run_all, profile, seeds, n_seeds, device, settings, run_id,
        results, data_mirror, executor, partition, gpus_per_run, cpus_per_run, time_min,
        mem_gb, wait_for_jobs) -> None:
    """Train methods on data sets, evaluate them and store the results."""
    if not run_all and not (methods and datasets):
        raise HarnessError("name a method and a data set (-m METHOD -d DATASET), or use --all")
    from harness import executors
    from harness.plugins import registry

    seeds = list(seeds) or (list(range(n_seeds)) if n_seeds else [0])
    parsed = config.parse_settings(settings)
    specs = plan(list(methods) or None, list(datasets) or None, seeds, profile)
    config.check_settings([registry().methods[m] for m in {s.method for s in specs}], parsed)
    run_id = run_id or config.run_id_for(profile, parsed)
    resources = executors.Resources(partition, gpus_per_run, cpus_per_run, time_min, mem_gb)
    try:
        failures = executors.submit(specs, executor, resources, run_id, settings=parsed,
                                    results=results, device=device, mirror=data_mirror,
                                    show_progress=not ctx.obj["quiet"])
    except (Interrupted, KeyboardInterrupt):
        click.echo("interrupted: the running method saved its checkpoint; run the same "
                   "command again to resume", err=True)
        ctx.exit(130)
    if executor != "local":
        plan_path = results_dir(results) / run_id / "plan.json"
        if not wait_for_jobs:
            click.echo(f"submitted; follow the runs with `harness status --run-id {run_id}`")
            return
        failures = [(executors.RunSpec(r["method"], r["dataset"], r["seed"], profile),
                     r["reason"]) for r in executors.wait(plan_path) if r["state"] != "done"]
    if failures:
        click.echo(f"{len(failures)} of {len(specs)} runs failed:", err=True)
        for spec, reason in failures:
            click.echo(f"  {spec.method} on {spec.dataset}, seed {spec.seed}: {reason}", err=True)
        ctx.exit(1)
    _print_table(results, "markdown")


@main.command()
@click.option("--results", envvar=RESULTS_ENV, help=f"Results directory [env {RESULTS_ENV}; ./results].")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "latex"]),
              default="markdown", show_default=True)
@user_errors
def table(results, fmt) -> None:
    """Tabulate every finished run found in the results directory."""
    _print_table(results, fmt)


def _print_table(results, fmt: str) -> None:
    from harness.table import collect, render, unfinished

    rows = collect(results_dir(results))
    skipped = unfinished(results_dir(results))
    if skipped:
        click.echo(f"{len(skipped)} unfinished runs left out of the table:", err=True)
        for line in skipped:
            click.echo(f"  {line}", err=True)
    if rows.empty:
        raise HarnessError(f"no finished runs under {results_dir(results)}; run `harness run` first")
    click.echo(render(rows, fmt))


@main.command()
@click.option("--results", envvar=RESULTS_ENV, help=f"Results directory [env {RESULTS_ENV}; ./results].")
@click.option("--run-id", help="Only this run id.")
@user_errors
def status(results, run_id) -> None:
    """Each planned run: done, running, queued, failed (why), interrupted or missing."""
    import pandas as pd

    from harness.executors import STATES, Plan, run_states

    paths = sorted(results_dir(results).glob(f"{run_id or '*'}/plan.json"))
    if not paths:
        raise HarnessError(f"no plan under {results_dir(results)}"
                           + (f" for run id {run_id}" if run_id else "") + "; run `harness run` first")
    for path in paths:
        plan = Plan.load(path)
        rows = pd.DataFrame(run_states(plan))
        counts = rows.state.value_counts()
        click.echo(f"### {plan.run_id} ({plan.executor}): " + ", ".join(
            f"{counts[s]} {s}" for s in STATES if s in counts))
        click.echo(rows.to_markdown(index=False) + "\n")


def _run_options(command):
    """--method/--dataset/--seed/--run-id/--results naming one finished run."""
    for option in reversed([
            click.option("-m", "--method", required=True, help="The run's method."),
            click.option("-d", "--dataset", required=True, help="The run's data set."),
            click.option("--seed", default=0, show_default=True, help="The run's seed."),
            click.option("--run-id", help="The run id, when several runs match."),
            click.option("--results", envvar=RESULTS_ENV, help="Results directory.")]):
        command = option(command)
    return command


@main.command()
@_run_options
@click.option("-n", "count", default=5, show_default=True, help="How many to show.")
@user_errors
def samples(method, dataset, seed, run_id, results, count) -> None:
    """Print generated sequences of a finished run (poems as four lines of five)."""
    from harness.inspect_runs import find_run, shown_samples

    run_dir = find_run(results_dir(results), method, dataset, seed, run_id)
    click.echo("\n\n".join(shown_samples(run_dir, count)))


@main.command()
@_run_options
@click.option("--steps", default=5, show_default=True, help="Points along each line.")
@click.option("--pairs", default=2, show_default=True, help="Pairs of held-out sequences.")
@click.option("--data-mirror", envvar=MIRROR_ENV, help="Local copy of the corpora.")
@user_errors
def interpolate(method, dataset, seed, run_id, results, steps, pairs, data_mirror) -> None:
    """Decode along the latent line between held-out sequences (a VAE's run)."""
    from harness.inspect_runs import find_run, interpolations, load_generator
    from harness.plugins import registry

    run_dir = find_run(results_dir(results), method, dataset, seed, run_id)
    corpus = registry().datasets[dataset].load(profile="default", seed=seed, mirror=data_mirror)
    for number, line in enumerate(interpolations(load_generator(run_dir), corpus, steps, pairs,
                                                 seed), 1):
        click.echo(f"--- pair {number}: held-out A -> B")
        click.echo("\n\n".join(line))


@main.command()
@click.option("--results", envvar=RESULTS_ENV, help="Results directory.")
@click.option("--out", type=click.Path(), help="Where the PNGs go [default: RESULTS/plots].")
@user_errors
def plot(results, out) -> None:
    """Draw learning curves (the paper's Figure 2) and quality-diversity charts."""
    from pathlib import Path

    from harness.plots import learning_curves, quality_diversity

    root = results_dir(results)
    out = Path(out) if out else root / "plots"
    written = learning_curves(root, out) + quality_diversity(root, out)
    if not written:
        raise HarnessError(f"no finished runs with curves under {root}")
    for path in written:
        click.echo(str(path))
