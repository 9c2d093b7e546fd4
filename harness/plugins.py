"""The plugin manager: built-in plugins and third-party ones, found the same way.

Both are built once per process, lazily: first the built-in modules (in this order,
which is also the order of a table's rows), then modules named in ``HARNESS_PLUGINS``,
then the entry points of group ``harness``. A plugin that fails to load, or whose hook
raises or registers a name already taken, is reported once and skipped.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pluggy
import torch

from harness import hookspecs
from harness.api import Dataset, HarnessError, Method

log = logging.getLogger("harness")

BUILTIN_PLUGINS = (
    "harness.generator",
    "harness.transformer",
    "harness.local",
    "harness.slurm",
    "harness.loggers",
    "harness_datasets.oracle",
    "harness_datasets.oracle_relgan",
    "harness_datasets.poems",
    "harness_datasets.obama",
    "harness_datasets.text_file",
    "harness_plugins.reference",
    "harness_plugins.mle",
    "harness_plugins.scheduled_sampling",
    "harness_plugins.pg_bleu",
    "harness_plugins.seqgan",
    "harness_plugins.maligan",
    "harness_plugins.rankgan",
    "harness_plugins.leakgan",
    "harness_plugins.relgan",
    "harness_plugins.jsdgan",
    "harness_plugins.vae",
)
ENTRY_POINT_GROUP = "harness"
NO_AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
# Comma-separated importable modules loaded as plugins without being installed (as
# PYTEST_PLUGINS does); also how a plugin reaches the jobs that an executor starts.
PLUGINS_ENV = "HARNESS_PLUGINS"

# Plugins that failed to load, kept so `harness list` and the run log can say so.
load_errors: dict[str, str] = {}


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name)
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            pm.register(importlib.import_module(name), name)
        except Exception as error:
            _report(name, f"failed to load (from {PLUGINS_ENV}): {error!r}")
    if not os.environ.get(NO_AUTOLOAD_ENV):
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    # pluggy's load_setuptools_entrypoints stops at the first plugin that raises;
    # this loop does what it does, one entry point at a time, and skips the broken.
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(entry_point.name) or pm.is_blocked(entry_point.name):
            continue
        try:
            pm.register(entry_point.load(), name=entry_point.name)
        except Exception as error:
            _report(entry_point.name, f"failed to load: {error!r}")


def _report(plugin: str, message: str) -> None:
    load_errors[plugin] = message
    log.warning("plugin %s %s; skipped", plugin, message)


@dataclass
class Registry:
    methods: dict[str, Method] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    executors: dict[str, Any] = field(default_factory=dict)
    loggers: dict[str, Any] = field(default_factory=dict)
    generators: dict[str, type] = field(default_factory=dict)  # "module:Class" -> the class
    plugin_of: dict[str, str] = field(default_factory=dict)  # "method:mle" -> plugin name

    def dataset(self, name: str) -> Dataset:
        """The data set ``name``, or for ``NAME:ARGUMENT`` the data set NAME (one that takes
        an argument) bound to ARGUMENT; a PATH argument is made absolute, so the name means
        the same file wherever the run is made."""
        if name in self.datasets:
            return self.datasets[name]
        prefix, sep, argument = name.partition(":")
        base = self.datasets.get(prefix)
        if not (sep and argument and base is not None and base.argument):
            takes = [f"{d.name}:{d.argument}" for d in self.datasets.values() if d.argument]
            raise HarnessError(f"unknown data set {name!r}; choose one of: "
                               f"{', '.join(sorted(set(self.datasets) | set(takes)))}")
        if base.argument == "PATH":
            argument = os.path.abspath(os.path.expanduser(argument))
        return dataclasses.replace(base, name=f"{prefix}:{argument}",
                                   load=functools.partial(base.load, argument=argument))


@functools.cache
def registry() -> Registry:
    """Every registered method, data set and executor, collected once per process, in
    the order their plugins were registered."""
    pm = plugin_manager()
    found = Registry()
    for kind, table in (("method", found.methods), ("dataset", found.datasets),
                        ("executor", found.executors), ("logger", found.loggers),
                        ("generator", found.generators)):
        hook = getattr(pm.hook, f"register_{kind}s")
        for impl in hook.get_hookimpls():
            def register(item, plugin=impl.plugin_name, kind=kind, table=table):
                name = _name_of(kind, item)
                if name in table:
                    raise HarnessError(
                        f"{kind} {name!r} from plugin {plugin} is already registered "
                        f"by plugin {found.plugin_of[f'{kind}:{name}']}")
                table[name] = item
                found.plugin_of[f"{kind}:{name}"] = plugin
            try:
                impl.function(register=register)
            except Exception as error:
                _report(impl.plugin_name, f"failed in register_{kind}s: {error!r}")
    return found


def _name_of(kind: str, item: Any) -> str:
    """What a registered item is known by: its name; a generator class, ``module:Class``."""
    if kind == "method" and not isinstance(item, Method):
        raise HarnessError(f"register_methods: {item!r} is not a harness.Method; a method's "
                           f"class must subclass harness.Method")
    if kind != "generator":
        return item.name
    if not (isinstance(item, type) and issubclass(item, torch.nn.Module)):
        raise HarnessError(f"register_generators: {item!r} is not a torch.nn.Module class")
    return class_name(item)


def class_name(kind: type) -> str:
    """How a generator class is registered and how a saved generator names it:
    ``module:QualifiedName``."""
    return f"{kind.__module__}:{kind.__qualname__}"


def reset() -> None:
    """Forget the plugin manager and the registry (tests that add plugins)."""
    registry.cache_clear()
    plugin_manager.cache_clear()
    load_errors.clear()
