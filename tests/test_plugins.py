import importlib.metadata
import types

import harness
from harness import plugins
from harness.cli import main
from harness_tiny import ToyMethod


def test_builtin_plugins_are_registered():
    found = plugins.registry()
    assert "mle" in found.methods and "oracle" in found.datasets
    assert found.plugin_of["method:mle"] == "harness_plugins.mle"


def test_a_third_party_plugin_registers_like_a_builtin(unigram_plugin):
    found = plugins.registry()
    assert found.methods["unigram"].name == "unigram"
    assert found.plugin_of["method:unigram"] == "harness_unigram"


def _entry_points(*pairs):
    return [importlib.metadata.EntryPoint(name, value, "harness") for name, value in pairs]


def test_a_plugin_that_fails_to_import_is_reported_and_skipped(monkeypatch, cli):
    monkeypatch.delenv(plugins.NO_AUTOLOAD_ENV)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: _entry_points(
        ("broken", "harness_no_such_module_here"), ("fine", "harness_plugins.mle:Mle")))
    found = plugins.registry()
    assert "mle" in found.methods
    assert "broken" in plugins.load_errors and "ModuleNotFoundError" in plugins.load_errors["broken"]
    result = cli("list")
    assert result.exit_code == 0
    assert "broken plugins (skipped):" in result.output and "broken:" in result.output


def test_a_plugin_whose_hook_raises_is_skipped_and_reported_once(register_plugin, caplog):
    module = types.ModuleType("harness_raises")

    @harness.hookimpl
    def register_methods(register):
        raise RuntimeError("boom")

    module.register_methods = register_methods
    register_plugin(module)
    with caplog.at_level("WARNING", logger="harness"):
        found = plugins.registry()
        assert plugins.registry() is found and plugins.registry() is found  # built once
    assert "mle" in found.methods
    assert "boom" in plugins.load_errors["harness_raises"]
    assert caplog.text.count("harness_raises failed in register_methods") == 1


def test_duplicate_names_are_rejected(register_plugin):
    module = types.ModuleType("harness_duplicate")

    @harness.hookimpl
    def register_methods(register):
        register(ToyMethod("mle"))

    module.register_methods = register_methods
    register_plugin(module)
    found = plugins.registry()
    assert found.plugin_of["method:mle"] == "harness_plugins.mle"
    assert "already registered by plugin harness_plugins.mle" in plugins.load_errors["harness_duplicate"]


def test_a_method_that_is_not_a_harness_method_is_reported(register_plugin):
    module = types.ModuleType("harness_duck")

    @harness.hookimpl
    def register_methods(register):
        register(types.SimpleNamespace(name="duck", train=lambda ctx: None))

    module.register_methods = register_methods
    register_plugin(module)
    assert "duck" not in plugins.registry().methods
    assert "is not a harness.Method; a method's class must subclass harness.Method" \
        in plugins.load_errors["harness_duck"]


def test_plugins_add_commands_and_executors_add_options(cli, register_plugin):
    import click

    shown = cli("--help").output
    assert "interpolate" in shown  # the VAE plugin's command, through register_commands
    assert "--partition" in cli("run", "--help").output  # the slurm executor's own option
    module = types.ModuleType("harness_hello")

    @harness.hookimpl
    def register_commands(cli):
        @cli.command()
        def hello():
            """Say hello (a test plugin's command)."""
            click.echo("hello from a plugin")

    module.register_commands = register_commands
    register_plugin(module)
    register_commands(cli=main)
    try:
        assert cli("hello").output == "hello from a plugin\n"
    finally:
        main.commands.pop("hello")


def test_modules_named_in_harness_plugins_are_loaded(monkeypatch, tmp_path):
    (tmp_path / "harness_listed.py").write_text(
        "import harness\n"
        "from harness.api import Dataset\n\n"
        "@harness.hookimpl\n"
        "def register_datasets(register):\n"
        "    register(Dataset('listed', lambda **kwargs: None, 'from HARNESS_PLUGINS'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.PLUGINS_ENV, "harness_listed, harness_not_there")
    found = plugins.registry()
    assert found.plugin_of["dataset:listed"] == "harness_listed"
    assert "ModuleNotFoundError" in plugins.load_errors["harness_not_there"]
    plugins.plugin_manager().unregister(name="harness_listed")
