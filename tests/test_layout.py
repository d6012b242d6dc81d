"""The code's shape, as the README describes it: the design map names every module that exists
(and nothing that does not), a handful of modules at the root, the model contract is declared
rather than probed, and functions stay short."""
from __future__ import annotations

import ast
import re
import subprocess

from tests.support.paths import ROOT

PACKAGES = ("api", "dataplane", "serving", "classifiers", "detectors", "runtimes", "models", "bench")
# Attributes the contract declares: probing for them means the contract is not trusted.
CONTRACT = ("batchable", "resize_mode", "class_ids", "validate", "input_size", "labels", "runtime", "device",
            "load_failure", "describe", "frameworks")


def design_map() -> str:
    section = (ROOT / "README.md").read_text().split("## Design\n", 1)[1]
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
    assert existing - mapped == set(), "modules missing from the README's design map"
    assert {m for m in mapped if m.endswith(".py")} - existing == set(), "the design map names modules that do not exist"


def test_a_handful_of_modules_at_the_root():
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["app.py", "config.py", "contract.py", "errors.py",
                                                         "registry.py"]


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
