"""The package map of docs/layout.md holds: data moves one way, so no module imports (even
lazily, inside a function) from a package listed after its own."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dfptmag"
# docs/layout.md, top to bottom; a module may import its own layer and the layers before it
LAYERS = [{"errors", "constants", "atomic", "data", "__init__"}, {"io"}, {"kernel"}, {"workflow"}, {"engines"},
          {"results"}, {"analysis"}, {"plot", "export", "model"}, {"jobs"}, {"api", "cli"}]
# the one upward import allowed: a job's returned object hands back dfptmag.load(output), lazily
ALLOWED = {("jobs", "dfptmag.api")}
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def layer_of(module: str) -> str:
    """'dfptmag.kernel.modes' → 'kernel'; 'dfptmag.errors' → 'errors'; 'dfptmag' → '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path):
    mod = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        mod = pkg
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("dfptmag"):
                continue
            if target == "dfptmag":        # from dfptmag import x: x may be a subpackage
                for a in node.names:
                    yield mod, f"dfptmag.{a.name}" if a.name in RANK else "dfptmag", node.lineno
            else:
                yield mod, target, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("dfptmag"):
                    yield mod, a.name, node.lineno


def test_every_module_belongs_to_a_layer():
    names = {p.stem if p.parent == PKG else p.relative_to(PKG).parts[0] for p in PKG.rglob("*.py")}
    assert names - set(RANK) == set(), "add new top-level modules/packages to docs/layout.md and LAYERS"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_go_one_way(path):
    bad = []
    for mod, target, line in imports(path):
        src, dst = layer_of(mod), layer_of(target)
        if RANK[dst] > RANK[src] and (src, target) not in ALLOWED:
            bad.append(f"{path.relative_to(PKG)}:{line} ({src}) imports {target} ({dst})")
    assert not bad, "\n".join(bad)
