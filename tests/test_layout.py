"""The code's shape, as docs/architecture.md describes it: the design map names every module that exists
(and nothing that does not), a handful of modules at the root, imports point down the layers,
each built-in model's and each format's name is written in its table only, the model contract
is declared rather than probed, and functions stay short."""
from __future__ import annotations

import ast
import re
import subprocess
import sys

from tests.support.paths import ROOT

PACKAGES = ("api", "dataplane", "registry", "serving", "classifiers", "detectors", "faces", "runtimes", "models", "bench")
# The layers of the design map (docs/architecture.md), top first: a module imports only from its own layer or
# below. A `python -m` entry point (a module with a __main__ block) stands on top of them all.
LAYERS = (("app", "serving", "config"), ("api",), ("dataplane",), ("registry",), ("classifiers", "detectors", "faces"),
          ("models",), ("runtimes",), ("contract", "errors"))
# Attributes the contract declares: probing for them means the contract is not trusted.
CONTRACT = ("batchable", "resize_mode", "class_ids", "validate", "input_size", "labels", "runtime", "device",
            "load_failure", "describe", "frameworks", "network_tensors", "infer_tensors")


def design_map() -> str:
    section = (ROOT / "docs" / "architecture.md").read_text().split("## The design map\n", 1)[1]
    return section.split("```", 2)[1]


def python_modules() -> list[str]:
    names = [p.name for p in ROOT.glob("*.py")]
    for package in PACKAGES:
        names += [f"{package}/{p.name}" for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"]
    return names


def test_the_design_map_names_every_module_and_only_those():
    text = design_map()
    mapped = set()
    package = None
    for line in text.splitlines():
        entry = re.match(r"^(\S+)", line)
        if entry:
            package = entry.group(1).rstrip("/") if entry.group(1).endswith("/") else None
            if not package:
                mapped.add(entry.group(1))
        for name in re.findall(r"\b([a-z_][a-z0-9_]*\.py)\b", line):
            if package and not line.startswith(name):
                mapped.add(f"{package}/{name}")
    existing = set(python_modules())
    assert existing - mapped == set(), "modules missing from the design map (docs/architecture.md)"
    assert {m for m in mapped if m.endswith(".py")} - existing == set(), "the design map names modules that do not exist"


def test_a_handful_of_modules_at_the_root():
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["app.py", "config.py", "contract.py", "errors.py"]


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_imports_point_down_the_layers():
    rank = {top: index for index, layer in enumerate(LAYERS) for top in layer}
    upward = []
    for name in python_modules():
        source = (ROOT / name).read_text()
        if "__main__" in source or name.startswith("bench/"):
            continue   # entry points stand on top
        layer = rank[name.split("/")[0].removesuffix(".py")]
        for line, module in _imports(ast.parse(source)):
            target = rank.get(module.split(".")[0])
            if target is not None and target < layer:
                upward.append(f"{name}:{line} imports {module}")
    assert upward == []


def _code_with(literal: str) -> set[str]:
    """The modules (tests, bench aside) whose code holds `literal` as a string; frameworks.py lists
    Python modules to import, by their module names (keras, tensorflow), not formats."""
    found = subprocess.run(["git", "grep", "-lF", literal, "--", "*.py", ":!tests/*", ":!bench/*",
                            ":!runtimes/frameworks.py"], cwd=ROOT, capture_output=True, text=True).stdout
    return set(found.split())


def test_each_built_in_name_and_format_is_written_in_its_table_only():
    from models.builtins import BUILTINS
    from runtimes.formats import FORMATS

    for name in BUILTINS:
        assert _code_with(f'"{name}"') == {"models/builtins.py"}, name
    for name in FORMATS:
        assert _code_with(f'"{name}"') == {"runtimes/formats.py"}, name


def test_every_module_imports():
    """A module whose imports name something that moved fails here, not in a benchmark run."""
    names = [name.removesuffix(".py").replace("/", ".") for name in python_modules()]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_model_contract_is_declared_not_probed():
    pattern = r"(getattr|hasattr)\([^)]*[\"'](" + "|".join(CONTRACT) + r")[\"']"
    found = subprocess.run(["git", "grep", "-nE", pattern, "--", "*.py", ":!tests/*"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert found == ""


def test_functions_stay_short():
    declarative = {"openapi_document"}  # one literal table of every route
    long = []
    for name in python_modules():
        tree = ast.parse((ROOT / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name not in declarative:
                if node.end_lineno - node.lineno + 1 > 60:
                    long.append(f"{name}:{node.name}")
    assert long == []
