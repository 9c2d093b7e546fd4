"""The documentation holds together: README.md stays a short front door whose quick start
CI runs as written, every relative link in it and in docs/*.md reaches a file (and, for a
markdown file, its heading), and every code block there is run or checked."""
from __future__ import annotations

import ast
import importlib
import itertools
import re
import shlex
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from conftest import docs_plugin_example

from harness.cli import main
from harness.plugins import ENTRY_POINT_GROUP, registry

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a markdown file's headings."""
    found = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z]+:", target)]


def test_the_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 250


def test_the_readme_links_every_docs_page():
    linked = set(relative_links(README))
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in linked, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: {target}"


# --- The quick start ---------------------------------------------------------------------

CI = ROOT / ".ci" / "run"


def quick_start() -> list[str]:
    """The quick start's command lines: the first bash block of README.md."""
    return next(block for block in code_blocks() if block.page == README).code.splitlines()


def test_the_quick_start_is_a_run_line_and_a_test_line():
    run_line, test_line = quick_start()
    # what running needs and the two small test tools, not the trackers' packages
    assert "pip install torch==2.13.0 -e '.[test]' &&" in run_line
    assert run_line.endswith("&& harness run --all --jobs 2")
    assert test_line == "python -m pytest -q"


def test_ci_installs_and_tests_as_the_quick_start_says():
    run_line, test_line = quick_start()
    ci = CI.read_text().splitlines()
    assert test_line in ci
    install = re.search(r"pip install [^&]*", run_line).group().strip()
    assert install.replace("pip install", "pip install --quiet") in ci


# --- Every code block of README.md and docs/*.md is run or checked ------------------------

FENCE = re.compile(r"^(?:<!-- (?P<note>[^\n]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```",
                   re.S | re.M)
EXCERPT = "excerpt of "


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    note: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(lang: str | None = None) -> list[Block]:
    """The fenced code blocks of the pages (of one language), each with the HTML comment
    just above it, if any."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for found in FENCE.finditer(text):
            line = text.count("\n", 0, found.start("lang")) + 1
            blocks.append(Block(page, line, found["lang"], found["code"], found["note"] or ""))
    return [block for block in blocks if lang is None or block.lang == lang]


def blocks_of(lang: str):
    return pytest.mark.parametrize("block", code_blocks(lang), ids=str)


def test_every_code_block_is_of_a_language_checked_here():
    for block in code_blocks():
        assert block.lang in {"bash", "python", "toml", ""}, f"{block}: no test reads {block.lang}"


def excerpted_file(block: Block) -> Path:
    """The file an excerpt block is checked against (``<!-- excerpt of PATH -->``)."""
    assert block.note.startswith(EXCERPT), f"{block}: neither an excerpt nor the plugin example"
    return ROOT / block.note.removeprefix(EXCERPT)


def import_path(path: Path, monkeypatch) -> types.ModuleType:
    """The module of a file of an example package, imported from its package's root."""
    package_root = next(p for p in path.parents if (p / "pyproject.toml").exists())
    monkeypatch.syspath_prepend(str(package_root))
    name = ".".join(path.relative_to(package_root).with_suffix("").parts).removesuffix(".__init__")
    return importlib.import_module(name)


@blocks_of("python")
def test_python_blocks_run(block, register_plugin, monkeypatch):
    if block.note == "plugin-example":  # conftest loads it for the tests that train it
        register_plugin(docs_plugin_example(), "harness_unigram")
        assert "unigram" in registry().methods
        return
    # An excerpt runs among its module's names and defines what the module defines.
    module = import_path(excerpted_file(block), monkeypatch)
    names = dict(vars(module))
    exec(compile(block.code, str(block), "exec"), names)
    for statement in ast.parse(block.code).body:
        if isinstance(statement, ast.ClassDef):
            ours, theirs = names[statement.name], getattr(module, statement.name)
            for key, value in vars(ours).items():
                if not key.startswith("__") and not callable(value):
                    assert getattr(theirs, key) == value, f"{block}: {statement.name}.{key}"
        elif isinstance(statement, ast.FunctionDef):
            assert hasattr(module, statement.name), f"{block}: {statement.name}"


def is_subset(part, whole) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            key in whole and is_subset(value, whole[key]) for key, value in part.items())
    return part == whole


@blocks_of("toml")
def test_toml_blocks_parse_and_match_their_file(block):
    parsed = tomllib.loads(block.code)
    groups = parsed.get("project", {}).get("entry-points", {})
    assert set(groups) <= {ENTRY_POINT_GROUP}, f"{block}: entry-point groups {set(groups)}"
    if block.note:
        whole = tomllib.loads(excerpted_file(block).read_text())
        assert is_subset(parsed, whole), f"{block}: differs from {block.note}"
    else:
        assert groups, f"{block}: a pyproject.toml block names the entry point or its file"


@blocks_of("")
def test_file_trees_exist(block):
    root, *entries = block.code.splitlines()
    parents = [ROOT / root.strip()]
    for entry in entries:
        name = re.search(r"[\w.][\w./-]*", entry.split("#")[0])
        depth = name.start() // 4 - 1  # "├── " is the first level, "    └── " the second
        path = parents[depth] / name.group()
        assert path.exists(), f"{block}: {path.relative_to(ROOT)}"
        parents[depth + 1:] = [path]


# The shell lines: `harness ...` parsed by the CLI, everything else what can be checked here.

def command_lines(block: Block) -> list[str]:
    """A bash block's commands: continuations joined, comments cut, split at `&&`."""
    text = block.code.replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in text.splitlines()]
    return [part.strip() for line in lines if line for part in line.split("&&")]


SHELL = [(block, line) for block in code_blocks("bash") for line in command_lines(block)]
HARNESS = [(block, line) for block, line in SHELL if line.startswith("harness ")]


def forms(line: str) -> list[list[str]]:
    """The concrete command lines a documented one stands for: a `[...]` group is optional
    and `a|b` means a or b."""
    found, words = [[]], shlex.split(line)
    while words:
        word = words.pop(0)
        if word.startswith("["):
            group = [word]
            while not group[-1].endswith("]"):
                group.append(words.pop(0))
            choices = [[], [w.strip("[]") for w in group]]
        else:
            choices = [[word]]
        found = [form + choice for form in found for choice in choices]
    return [list(words) for form in found
            for words in itertools.product(*(word.split("|") for word in form))]


def parse(words: list[str]) -> None:
    """Parse a command line (after `harness`) with the real CLI, stopping short of running
    it: every command and option must exist and every value suit its option (a path need
    not exist here); raises click.UsageError otherwise."""
    command, ctx = main, click.Context(main, info_name="harness")
    while True:
        values, words, _ = command.make_parser(ctx).parse_args(words)
        for param in command.params:
            if param.name in values and not isinstance(param.type, click.Path):
                param.type_cast_value(ctx, values[param.name])
        if not isinstance(command, click.Group):
            break
        name, *words = words or [""]
        subcommand = command.get_command(ctx, name)
        if subcommand is None:
            raise click.UsageError(f"no command {name!r} in {ctx.command_path}")
        command, ctx = subcommand, click.Context(subcommand, info_name=name, parent=ctx)
    if words:
        raise click.UsageError(f"{ctx.command_path}: unexpected {words}")


@pytest.mark.parametrize(("block", "line"), HARNESS, ids=[f"{b}:{l}" for b, l in HARNESS])
def test_harness_lines_parse(block, line):
    for words in forms(line):
        parse(words[1:])


@pytest.mark.parametrize("line", ["harness run -m mle --no-such-option",
                                  "harness run --precision fp8", "harness tabel",
                                  "harness table --format xml", "harness verify a b"])
def test_the_parser_refuses_what_the_cli_refuses(line):
    with pytest.raises(click.UsageError):
        parse(shlex.split(line)[1:])


def test_the_forms_of_a_documented_line():
    assert forms("harness table [--format csv|latex] --reference [NAME]") == [
        ["harness", "table", "--reference"], ["harness", "table", "--reference", "NAME"],
        ["harness", "table", "--format", "csv", "--reference"],
        ["harness", "table", "--format", "latex", "--reference"],
        ["harness", "table", "--format", "csv", "--reference", "NAME"],
        ["harness", "table", "--format", "latex", "--reference", "NAME"]]


def check_shell_line(line: str) -> None:
    """What a non-harness line names must be there: the files and extras pip installs,
    the scripts python runs, the virtual environment it activates."""
    words = shlex.split(line)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    if words[:2] == ["pip", "install"]:
        for word in words[2:]:
            path, _, extra = word.partition("[")
            if path.startswith((".", "examples/")):
                assert (ROOT / path / "pyproject.toml").exists(), line
                assert extra.rstrip("]") in {"", *extras}, line
    elif re.fullmatch(r"python(3\.\d+)?", words[0]):
        assert words[1:3] in (["-m", "venv"], ["-m", "pytest"]) or (ROOT / words[1]).is_file(), line
    else:
        assert words == [".", ".venv/bin/activate"], f"no check for {line!r}"


@pytest.mark.parametrize(("block", "line"), [(b, l) for b, l in SHELL if (b, l) not in HARNESS],
                         ids=lambda value: str(value))
def test_other_shell_lines_name_what_exists(block, line):
    check_shell_line(line)


def test_the_shell_check_refuses_what_is_missing():
    for line in ["pip install -e examples/harness-none", "pip install -e '.[tests]'",
                 "python benchmarks/bench_none.py", "make all"]:
        with pytest.raises(AssertionError):
            check_shell_line(line)


# The documented commands quick to run here run: they need no trained run.
RUN_HERE = ("harness list", "harness data inspect my_lines.txt", "harness table --reference")


@pytest.mark.parametrize("command", RUN_HERE)
def test_quick_documented_commands_run(command, cli, tmp_path, monkeypatch):
    documented = {" ".join(words) for _, line in HARNESS for words in forms(line)}
    assert command in documented
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_lines.txt").write_text("".join(f"the {n} line of mine\n" for n in range(50)))
    result = cli(*shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    assert result.output.strip()
