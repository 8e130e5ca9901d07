"""The layers of resbench, drawn from its imports: one layer per package, data flows one way, no import
runs back up and no module reaches itself through others.

declaration (paper/) -> run directory (train/, runs/) -> DataFrame (report/runs) -> notebook -> report.
ARCHITECTURE.md draws the same layers.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resbench"
# lowest first; a module may import from its own package and the packages below it
LAYERS = ["host", "models", "data", "paper", "probes", "runs", "evaluation", "train", "calibrate", "sweep",
          "bench", "report", "cli"]
TOP = {"__init__", "__main__"}  # the package's own face: the version, `python -m resbench`


def module_name(path: Path) -> str:
    return ".".join(path.with_suffix("").relative_to(PACKAGE).parts).removesuffix(".__init__")


def layer(module: str) -> int:
    package = module.split(".")[0]
    if package in TOP:
        return len(LAYERS) if package == "__main__" else -1
    assert package in LAYERS, f"resbench.{module} is in no layer of tests/test_architecture.py"
    return LAYERS.index(package)


def imports(path: Path) -> set[str]:
    """The resbench modules a file imports, top-level and inside functions (`x.y` for resbench.x.y)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.removeprefix("resbench.") for a in node.names if a.name.startswith("resbench.")}
        if isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import (resbench imports by absolute names)"
            if (node.module or "").split(".")[0] != "resbench":
                continue
            target = node.module.removeprefix("resbench").lstrip(".")
            for alias in node.names:  # `from resbench.x import y`: y is a module where such a file exists
                where = PACKAGE.joinpath(*filter(None, target.split(".")), alias.name)
                is_module = where.with_suffix(".py").exists() or where.is_dir()
                found.add(".".join(filter(None, [target, alias.name])) if is_module else target or "__init__")
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS), packages ^ set(LAYERS)


def test_no_import_runs_back_up_the_layers():
    upward = [f"{module} imports {target}" for module, targets in graph().items() for target in targets
              if layer(target) > layer(module)]
    assert not upward, "\n".join(upward)


def test_no_module_reaches_itself_through_others():
    edges = graph()
    done, stack, cycles = set(), [], []

    def visit(module):
        if module in stack:
            cycles.append(stack[stack.index(module):] + [module])
            return
        if module in done:
            return
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            visit(target)
        stack.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("source, expected", [
    ("import resbench.report.core\nfrom resbench.cli.main import app\n", {"report.core", "cli.main"}),
    ("from resbench.report import core as c\nfrom resbench import __version__\n", {"report.core", "__init__"}),
])
def test_imports_are_read_in_every_form(tmp_path, monkeypatch, source, expected):
    fake = tmp_path / "resbench"
    for module in ("report/core.py", "cli/main.py"):
        (fake / module).parent.mkdir(parents=True, exist_ok=True)
        (fake / module).touch()
    (fake / "models").mkdir()
    (fake / "models" / "net.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert imports(fake / "models" / "net.py") == expected


def test_a_cycle_is_found(tmp_path, monkeypatch):
    fake = tmp_path / "resbench"
    (fake / "runs").mkdir(parents=True)
    (fake / "runs" / "a.py").write_text("from resbench.runs import b\n")
    (fake / "runs" / "b.py").write_text("from resbench.runs.c import x\n")
    (fake / "runs" / "c.py").write_text("import resbench.runs.a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(AssertionError, match="runs.a -> runs.b -> runs.c -> runs.a"):
        test_no_module_reaches_itself_through_others()


RUN_FILES = {"config.json", "env.json", "metrics.jsonl", "responses.json", "summary.json", "error.txt"}


def run_file_names(path: Path) -> set[str]:
    """The run directory's file names a module spells out in code (docstrings and comments aside)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and id(node) not in docstrings
            and isinstance(node.value, str) and node.value in RUN_FILES}


def test_one_module_names_a_run_directorys_files():
    """runs/rundir.py owns a run directory's layout: every other module reads and writes through it."""
    owner = PACKAGE / "runs" / "rundir.py"
    others = {module_name(p): names for p in PACKAGE.rglob("*.py") if p != owner and (names := run_file_names(p))}
    assert not others, others
    assert run_file_names(owner) == RUN_FILES
