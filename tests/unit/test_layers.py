"""The layer order of DESIGN.md, checked on the source: a module imports only its own layer and
the layers below it — at the top, inside functions and under ``if TYPE_CHECKING:`` alike.

    errors, _version (shared) < store < engine < observe < agents < trust < interfaces
"""

from __future__ import annotations

import ast
from pathlib import Path

import tether

SRC = Path(tether.__file__).parent

LAYERS = ["shared", "store", "engine", "observe", "agents", "trust", "interfaces"]
"""Lowest first. ``shared`` is what every layer may read: the one error tree (`errors`) and
the package version (`_version`)."""

SHARED = {"errors", "_version"}

INTERFACES = {"app", "cli", "server", "access", "examples", "__init__", "__main__"}
"""The top: the façade users import, the command line, the HTTP server, principals and audit,
the shipped example, and the package's own lazy name map."""

ALLOWED: dict[tuple[str, str], str] = {}
"""Known edges that break the order, each with the reason it is still there. Empty: none."""


def layer_of(module: str) -> str:
    """The layer of ``tether.x.y`` (``tether`` itself is the interfaces' lazy name map)."""
    parts = module.split(".")
    assert parts[0] == "tether", module
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in INTERFACES:
        return "interfaces"
    if top in SHARED:
        return "shared"
    assert top in LAYERS, f"{module}: no layer for tether.{top}; add it to test_layers.py"
    return top


def module_name(path: Path) -> str:
    relative = path.relative_to(SRC.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every tether module named by an import anywhere in `tree`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
    return {name for name in names if name == "tether" or name.startswith("tether.")}


def edges() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target in sorted(imported(tree, module, path.name == "__init__.py")):
            found.append((module, target))
    return found


def test_every_module_imports_only_its_layer_and_those_below() -> None:
    rank = {layer: index for index, layer in enumerate(LAYERS)}
    wrong = []
    for module, target in edges():
        source_layer, target_layer = layer_of(module), layer_of(target)
        if rank[target_layer] <= rank[source_layer]:
            continue
        if (module, target) in ALLOWED:
            continue
        wrong.append(f"{module} ({source_layer}) imports {target} ({target_layer})")
    assert not wrong, "imports that go up the layers:\n" + "\n".join(wrong)


def test_the_check_sees_function_level_and_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from tether.trust.policy import Policy\n"
        "def f():\n    import tether.agents.agent\n    from ..observe import spans\n"
    )
    found = imported(ast.parse(source), "tether.engine.worker", is_package=False)
    assert found == {"tether.trust.policy", "tether.agents.agent", "tether.observe"}
    assert [layer_of(name) for name in sorted(found)] == ["agents", "observe", "trust"]


def test_the_allowed_edges_still_exist() -> None:
    """An allow-list entry whose import is gone must be deleted, not left to excuse a new one."""
    present = set(edges())
    assert not [edge for edge in ALLOWED if edge not in present]
