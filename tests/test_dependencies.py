"""Every third-party module dfptmag/ imports is declared in pyproject's dependencies, so a
plain ``pip install`` brings everything dfptmag imports. An ast walk of all import statements,
no QE, no run fixture."""
import ast
import re
import sys
import tomllib

from conftest import ROOT

DIST = {"yaml": "pyyaml", "PIL": "pillow", "mpl_toolkits": "matplotlib", "sklearn": "scikit-learn"}


def _imports():
    names = set()
    for path in (ROOT / "dfptmag").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "dfptmag"}


def test_every_import_is_declared():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    missing = sorted(n for n in _imports() if DIST.get(n, n).lower().replace("_", "-") not in declared)
    assert not missing, f"imported by dfptmag/ but not in pyproject dependencies: {missing}"
