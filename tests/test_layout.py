"""The package's layout rules, read from the source with ``ast`` (nothing is imported):

- no import cycles between package modules, imports inside functions included;
- argparse is used only under ``alsresearch/cli/`` (the library takes values, not options);
- no module uses another module's private (``_name``) functions or classes;
- every command listed by the CLI has its own module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.layout import REPO_ROOT

PACKAGE = REPO_ROOT / "alsresearch"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in the file."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            found += [(target, a.name, node.lineno) for a in node.names]
    return found


def _edges(module: str) -> set[str]:
    """Package modules that ``module`` imports: ``from P import m`` depends on ``P.m`` when it
    is a module, else on ``P`` itself."""
    deps = set()
    for target, name, _ in _imports(module):
        if not target.startswith("alsresearch"):
            continue
        if name is not None and f"{target}.{name}" in MODULES:
            deps.add(f"{target}.{name}")
        elif target in MODULES and target != "alsresearch":
            deps.add(target)
    deps.discard(module)
    return deps


def _cycles() -> list[list[str]]:
    graph = {m: _edges(m) for m in MODULES}
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                found.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_the_package_has_no_import_cycles():
    assert _cycles() == []


def test_the_cycle_finder_finds_a_planted_cycle(monkeypatch, tmp_path):
    """Guards the guard: two modules importing each other (one inside a function) are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from alsresearch import b\n")
    b.write_text("def f():\n    from alsresearch.a import g\n")
    monkeypatch.setitem(MODULES, "alsresearch.a", a)
    monkeypatch.setitem(MODULES, "alsresearch.b", b)
    assert ["alsresearch.a", "alsresearch.b", "alsresearch.a"] in _cycles()


def test_argparse_is_used_only_by_the_command_line_package():
    users = [
        m
        for m in MODULES
        if not (m == "alsresearch.cli" or m.startswith("alsresearch.cli."))
        and any(target == "argparse" for target, _, _ in _imports(m))
    ]
    assert users == [], f"argparse outside alsresearch/cli/: {users}"


def _private_uses(module: str) -> list[str]:
    """``from x import _name`` and ``x._name`` where x is another package module."""
    tree = ast.parse(MODULES[module].read_text())
    uses, aliases = [], {}
    for target, name, line in _imports(module):
        if not target.startswith("alsresearch") or name is None:
            continue
        if f"{target}.{name}" in MODULES:  # a module, private or not, imported by name
            aliases[name] = f"{target}.{name}"
        elif name.startswith("_") and target != module:
            uses.append(f"{module}:{line} imports {target}.{name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            uses.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return uses


def test_no_module_uses_another_modules_private_names():
    uses = [u for m in MODULES for u in _private_uses(m)]
    assert uses == []


def test_every_command_has_its_own_module():
    from alsresearch.cli import COMMANDS, build_parser, command_module

    assert all(command_module(name) in MODULES for name in COMMANDS)
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_docstrings_carry_no_benchmark_figures(module):
    """Speed figures belong to benchmarks/ output and the README, where they are refreshed."""
    tree = ast.parse(MODULES[module].read_text())
    texts = [
        ast.get_docstring(n) or ""
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    figure = re.compile(
        r"\b\d+(\.\d+)?x\b"  # a ratio: 0.38x
        r"|\b\d+(\.\d+)? ?(ms|us|µs|MB|GB|MiB|GiB|GB/s)\b"  # a time, a size, a bandwidth
        r"|\b\d+(\.\d+)? s (CPU|wall)\b"
    )
    bad = [m.group(0) for t in texts for m in figure.finditer(t)]
    assert bad == [], f"{module}: figures in docstrings: {bad}"
