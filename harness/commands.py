"""What a command needs, the harness's own or one a plugin adds (``register_commands``):
a HarnessError shown as one line with exit code 2, the options that name a finished run,
that run found in the store, and the corpus it was trained on loaded again."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from harness import config, store
from harness.api import HarnessError
from harness.store import RESULTS_ENV


class UserError(click.ClickException):
    exit_code = 2


class Bounded(click.IntRange):
    """An integer range whose refusal is one line with exit code 2, like every other
    mistake (Click's own would print the usage above it)."""

    def fail(self, message, param=None, ctx=None):
        raise UserError(f"{param.get_error_hint(ctx) if param else 'value'}: {message}")


SEED = Bounded(0, config.MAX_SEED)  # numpy's seeds, with room for the harness's offsets


def user_errors(command):
    """Show a HarnessError as one line and exit with code 2, no traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except HarnessError as error:
            raise UserError(str(error)) from None
    return wrapper


def results_option(command):
    return click.option(
        "--results", envvar=RESULTS_ENV,
        help=f"Results directory [env {RESULTS_ENV}; ./{store.DEFAULT_RESULTS}].")(command)


def run_options(method: str | None = None):
    """--method/--dataset/--seed/--run-id/--results naming one finished run."""
    def decorate(command):
        for option in reversed([
                click.option("-m", "--method", required=method is None, default=method,
                             help="The run's method."),
                click.option("-d", "--dataset", required=True, help="The run's data set."),
                click.option("--seed", default=0, show_default=True, type=SEED,
                             help="The run's seed."),
                click.option("--run-id", help="The run id, when several runs match."),
                results_option]):
            command = option(command)
        return command
    return decorate


def finished_run(results, method: str, dataset: str, seed: int, run_id: str | None) -> Path:
    """The one finished run of (method, data set, seed); a HarnessError names the choice."""
    from harness.plugins import registry

    try:
        dataset = registry().dataset(dataset).name  # text:lines.txt is text:/abs/lines.txt
    except HarnessError:
        pass  # a data set not installed here: its runs can still be shown
    found = store.find_run(results, method, dataset, seed, run_id)
    if not found:
        raise HarnessError(f"no finished run of {method} on {dataset}, seed {seed} under "
                           f"{store.results_dir(results)}; run `harness run -m {method} -d "
                           f"{dataset}` first")
    if len(found) > 1:
        ids = ", ".join(store.key_of(p).run_id for p in found)
        raise HarnessError(f"several runs of {method} on {dataset}: {ids}; choose with --run-id")
    return found[0]


def run_corpus(run_dir: Path, mirror: str | None, profile: str | None = None):
    """The corpus a finished run was trained on, loaded again (its data set, profile, seed
    and settings as config.json records them; ``profile`` loads it as another profile does)."""
    from harness.plugins import registry
    from harness.runner import load_corpus

    recorded = store.read_config(run_dir)
    profile = config.canonical_profile(profile or recorded["profile"])
    profiles = config.known_profiles(registry().methods.values())
    if profile not in profiles:
        raise HarnessError(f"{run_dir / store.CONFIG}: profile {recorded['profile']!r} is none "
                           f"of this harness's ({', '.join(profiles)})")
    return load_corpus(registry().dataset(recorded["dataset"]), profile,
                       recorded["seed"], mirror, recorded.get("settings", {}))
