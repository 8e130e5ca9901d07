"""The layers of resbench, drawn from its imports: data flows one way, and no import runs back up.

declaration (experiments/, spec) -> run directory (train/, runner) -> DataFrame (report/runs) -> notebook
-> report. ARCHITECTURE.md draws the same layers.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "resbench"
# lowest first; a module may import from its own layer and those below it
LAYERS = [
    ("pure modules", ["_vision", "machine", "models", "data", "probes.responses", "train.splits", "train.stop",
                      "train.checkpoint", "spec", "probes.complexity"]),
    ("run files and recipes", ["results", "train.recipe"]),
    ("training", ["train", "protocol", "store", "evaluation"]),
    ("orchestration", ["runner", "jobs", "launch", "preflight", "loan", "loan_plan", "bench", "bench_pack", "bench_step", "ensemble",
                       "calibrate"]),
    ("reports", ["report"]),
    ("commands", ["cli", "cli_common", "cli_bench", "cli_loan", "cli_calibrate", "__main__"]),
]


def layer(module: str) -> int:
    """The layer of a module: its longest matching prefix in LAYERS."""
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/test_architecture.py"
    return best[0]


def imports(path: Path) -> set[str]:
    """The resbench modules a file imports (relative imports resolved), top-level and inside functions."""
    module = ".".join(path.with_suffix("").relative_to(PACKAGE).parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):  # import resbench.x.y
            found |= {a.name.removeprefix("resbench.") for a in node.names if a.name.startswith("resbench.")}
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "resbench"):
            base = package.split(".") if package and node.level else []
            base = base[:len(base) - node.level + 1] if node.level else []
            module_parts = (node.module.split(".") if node.module else [])[0 if node.level else 1:]
            target = ".".join(p for p in base + module_parts if p)
            for alias in node.names:  # `from . import x`: x is a module where such a file or package exists
                where = PACKAGE.joinpath(*filter(None, target.split(".")), alias.name)
                is_module = where.with_suffix(".py").exists() or where.is_dir()
                found.add(".".join(filter(None, [target, alias.name])) if is_module else target)
    found.discard("")
    return found


def test_no_import_runs_back_up_the_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.with_suffix("").relative_to(PACKAGE).parts).removesuffix(".__init__")
        if module == "__init__":
            continue
        for target in imports(path):
            if target and layer(target) > layer(module):
                upward.append(f"{module} ({LAYERS[layer(module)][0]}) imports {target} "
                              f"({LAYERS[layer(target)][0]})")
    assert not upward, "\n".join(upward)


def module_name(path: Path) -> str:
    return ".".join(path.with_suffix("").relative_to(PACKAGE).parts).removesuffix(".__init__")


def test_absolute_imports_are_read_too(tmp_path, monkeypatch):
    """`import resbench.x` and `from resbench.x import y` count as `from .x import y` does."""
    fake = tmp_path / "resbench"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "net.py").write_text("import resbench.report.core\nfrom resbench.cli import app\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert imports(fake / "models" / "net.py") == {"report.core", "cli"}


def test_no_two_modules_import_each_other():
    graph = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py") if module_name(p) != "__init__"}
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                    if b != a and a in graph.get(b, ())})
    assert not pairs, pairs
