"""Profiles and hyper-parameters: a method's defaults, its profile overrides, then --set."""
from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Iterable

from harness.api import Dataset, HarnessError, Method

# "default" is the CPU-sized profile (each Config's defaults); "paper" the paper's settings.
# Other profiles (e.g. a paper's code as first published) exist where methods declare them.
BASE_PROFILES = ("default", "paper")
# Profile names that committed results carry from before a rename: the SeqGAN family's
# "authors-2016" is "authors", the profile of every method whose figures its authors'
# code made.
RENAMED_PROFILES = {"authors-2016": "authors"}

# Upper bounds on the numbers a setting may take. They catch a typo (three zeros too many)
# before it becomes days of work or an allocation the machine cannot make; every default
# and profile of the built-in methods lies far inside them (tests/test_input_checks.py).
# Sizes that decide memory are checked against the memory itself (harness.memory).
#
# Any other integer setting: 100x the largest value a profile uses (disc_negatives=10,000),
# so no real size or count is refused, and far below 2**31, where int32 indices end.
MAX_INTEGER = 1_000_000
# A count of training work (a setting named like *epochs, *batches, *steps, *rounds,
# *cycles): the longest profiles run 350 epochs or 3,000 adversarial steps; 100,000 of
# them would take more than a day even at a second each.
MAX_TRAINING_WORK = 100_000
WORK_COUNTS = ("epochs", "batches", "steps", "rounds", "cycles")
# Float settings (rates, weights, clips) scale a computation and size nothing: they need
# only be finite. A huge one is either meant (grad_clip=1e9: no clipping) or diverges,
# and a run that diverges fails and says so.

# Sampling temperatures (--sweep, generate --temperature): at 0.01 sampling is already
# all but greedy (a logit gap of 0.1 becomes a factor of e^10), at 100 all but uniform
# (a gap of 10 becomes e^0.1); beyond either end it shows nothing of the model.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0

# Seeds (--seed, and settings named *seed): numpy takes seeds below 2**32, and the harness
# adds small offsets to a run's seed (its evaluation draws from seed + 7,919): 2**31 - 1.
MAX_SEED = 2**31 - 1
# Seeds of one plan (--seeds K: seeds 0..K-1): each is a run of every method on every
# data set; papers report 1 to 10.
MAX_SEED_COUNT = 1_000


def known_profiles(methods: Iterable[Method]) -> list[str]:
    extra = {name for method in methods for name in method.profiles}
    return list(BASE_PROFILES) + sorted(extra - set(BASE_PROFILES))


def canonical_profile(name: str) -> str:
    """A profile's name today (``authors-2016`` is ``authors``)."""
    return RENAMED_PROFILES.get(name, name)


def profiles_of(method: Method) -> list[str]:
    """The base profiles, then the method's own."""
    own = [name for name in method.profiles if name not in BASE_PROFILES]
    return [*BASE_PROFILES, *own]


def has_profile(method: Method, profile: str) -> bool:
    """Whether ``run --all --profile`` runs the method: every method has the base profiles;
    another profile only the methods that declare it, and the reference rows."""
    return (profile in BASE_PROFILES or profile in method.profiles
            or method.reference is not None)


def parse_settings(pairs: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings from ``--set`` into a dict, raw values kept as strings."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"--set {pair!r}: expected key=value, e.g. --set epochs=10")
        settings[key.strip()] = value.strip()
    return settings


def _parse_value(key: str, raw: str, default: Any) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        return kind(raw)
    except ValueError:
        raise HarnessError(f"--set {key}={raw}: expected {kind.__name__} "
                           f"(default {default!r})") from None


def resolve(method: Method | Dataset, profile: str, settings: dict[str, str],
            dataset: Dataset | None = None) -> Any:
    """The method's (or a data set's) Config for ``profile`` with ``settings`` applied (keys
    it lacks ignored); under the default profile, ``dataset``'s ``method_settings`` come first.

    Numbers may not be negative, and every number given (by ``settings``, the profile or
    the data set) must pass ``check_number``; a Config checks tighter ranges in
    ``__post_init__`` (raising ValueError, e.g. through ``require``)."""
    defaults = method.Config()
    own = dataset.method_settings if dataset is not None and profile == "default" else {}
    values = {key: value for key, value in own.items() if hasattr(defaults, key)}
    profiles = method.profiles if isinstance(method, Method) else {}  # a data set has none
    values.update(profiles.get(profile, {}))
    for key, raw in settings.items():
        if hasattr(defaults, key):
            values[key] = _parse_value(key, raw, getattr(defaults, key))
            if _is_number(values[key]) and values[key] < 0 <= getattr(defaults, key):
                raise HarnessError(f"--set {key}={raw}: must not be negative")
    try:
        resolved = dataclasses.replace(defaults, **values)
        for key in values:  # a plugin's own defaults are its author's choice
            check_number(key, getattr(resolved, key))
        return resolved
    except ValueError as error:
        given = ", ".join(f"{k}={v}" for k, v in settings.items() if hasattr(defaults, k))
        raise HarnessError(f"{method.name} settings ({given or profile + ' profile'}): "
                           f"{error}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def upper_bound(name: str) -> tuple[int, str]:
    """The largest integer a setting may take, and what the bound is, by the last word of
    its name: a count of training work (``pretrain_epochs``, ``adv_batches``), a seed
    (``split_seed``), or any other integer."""
    last_word = name.rpartition("_")[2]
    if last_word in WORK_COUNTS:
        return MAX_TRAINING_WORK, "a count of training work"
    if last_word == "seed":
        return MAX_SEED, "a seed"
    return MAX_INTEGER, "the bound on any integer setting"


def check_number(name: str, value: Any) -> None:
    """ValueError naming the setting and its bound unless a number is finite and, for an
    integer, at most its ``upper_bound``."""
    if not _is_number(value):
        return
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value}")
    bound, what = upper_bound(name)
    if isinstance(value, int) and value > bound:
        raise ValueError(f"{name} must be at most {bound:,} ({what}), not {value:,}")


def require(config: Any, *, at_least_one: Iterable[str] = (), fractions: Iterable[str] = (),
            positive: Iterable[str] = (), choices: dict[str, Iterable[str]] | None = None) -> None:
    """Range checks for a Config's ``__post_init__``: ValueError naming the field."""
    for name in at_least_one:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, not {getattr(config, name)}")
    for name in positive:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be greater than 0, not {getattr(config, name)}")
    for name in fractions:
        if not 0 <= getattr(config, name) <= 1:
            raise ValueError(f"{name} must lie in [0, 1], not {getattr(config, name)}")
    for name, allowed in (choices or {}).items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, "
                             f"not {getattr(config, name)!r}")


def check_settings(methods: Iterable[Method], settings: dict[str, str]) -> None:
    """Every --set key must belong to at least one of the methods (or data sets with
    settings, or other holders of a ``Config``) that will run."""
    methods = [m for m in methods if m.Config is not None]
    valid = sorted({f.name for m in methods for f in dataclasses.fields(m.Config)})
    for key in settings:
        if key not in valid:
            names = ", ".join(m.name for m in methods)
            raise HarnessError(f"--set {key}: no such setting for {names}; valid keys: "
                               f"{', '.join(valid)}")


def run_id_for(profile: str, settings: dict[str, str], sweep: tuple[float, ...] | None = None,
               device: str = "cpu", precision: str = "fp32") -> str:
    """Runs with the same profile, settings (and sweep, when not the default one), device
    kind and precision share a run id, so finished ones are reused; a run on another
    device is another run (other random streams, other last bits)."""
    parts = [f"{k}={v}" for k, v in sorted(settings.items())]
    if sweep is not None:
        parts.append("sweep=" + ",".join(f"{t:g}" for t in sweep))
    if device != "cpu":  # CPU runs keep the ids they have always had
        parts.append(f"device={device}")
    if precision != "fp32":
        parts.append(f"precision={precision}")
    if not parts:
        return profile
    return f"{profile}-{hashlib.sha1(','.join(parts).encode()).hexdigest()[:8]}"


def parse_temperatures(text: str) -> tuple[float, ...]:
    """``--sweep 0.3,0.5,1,2`` as a sorted tuple of temperatures, each within
    MIN_TEMPERATURE..MAX_TEMPERATURE."""
    try:
        values = tuple(sorted(float(t) for t in text.split(",") if t.strip()))
    except ValueError:
        values = ()
    if not values or not all(map(is_temperature, values)):
        raise HarnessError(f"--sweep {text}: expected temperatures from {MIN_TEMPERATURE:g} to "
                           f"{MAX_TEMPERATURE:g} separated by commas, e.g. --sweep "
                           f"0.3,0.5,0.7,1,1.5,2")
    return values


def check_temperature(value: float) -> None:
    """HarnessError unless ``value`` (``generate --temperature``) is a temperature worth
    sampling at."""
    if not is_temperature(value):
        raise HarnessError(f"--temperature {value}: expected a temperature from "
                           f"{MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}")


def is_temperature(value: float) -> bool:
    return MIN_TEMPERATURE <= value <= MAX_TEMPERATURE  # False for nan
