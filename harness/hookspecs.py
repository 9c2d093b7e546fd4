"""The hooks a harness plugin implements."""
import pluggy

hookspec = pluggy.HookspecMarker("harness")


@hookspec
def register_methods(register):
    """Register generator training methods by calling ``register(method)``."""


@hookspec
def register_datasets(register):
    """Register data sets by calling ``register(dataset)``."""


@hookspec
def register_generators(register):
    """Register the generator classes a saved generator.pt may name (and nothing else loads)."""


@hookspec
def register_executors(register):
    """Register executors (objects with name, Options, runs_here, launch and live)."""


@hookspec
def register_loggers(register):
    """Register loggers (objects with name, extra and open) that mirror runs to a tracker."""


@hookspec
def register_commands(cli):
    """Add commands to the ``harness`` command line (a click.Group)."""
