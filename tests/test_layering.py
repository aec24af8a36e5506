"""Dependencies point one way: application -> inference -> models -> core.

Checked on the source (imports in every module of ``models/`` and ``inference/``) and on a
fresh interpreter (what importing the library pulls in)."""

import ast
import subprocess
import sys

import pytest
from common import REPO

#: What each layer may import from this project, besides itself (a package and its modules).
ALLOWED = {
    "models": {"pyro_vae.core"},
    "inference": {"pyro_vae.core", "pyro_vae.models"},
    "pyro_vae/core": set(),
}
#: Where each installed package's source lives.
SOURCES = {
    "pyro_vae": REPO / "pyro_vae",
    "pyro_vae.models": REPO / "models",
    "pyro_vae.inference": REPO / "inference",
}


def _project_imports(path):
    """Absolute ``pyro_vae...`` modules a file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "pyro_vae"}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    own = "pyro_vae." + layer.removeprefix("pyro_vae/")
    for path in sorted((REPO / layer).rglob("*.py")):
        for name in _project_imports(path):
            allowed = name.startswith(own) or any(
                name == below or name.startswith(below + ".") for below in ALLOWED[layer]
            )
            assert allowed, f"{path.relative_to(REPO)} imports {name}"


def test_importing_the_library_loads_no_plotting_arviz_or_torchvision():
    code = (
        "import sys, pyro_vae, pyro_vae.models, pyro_vae.inference\n"
        "heavy = ('matplotlib', 'arviz', 'torchvision', 'pyro_vae.training', 'pyro_vae.data')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_import_pyro_vae_alone_loads_neither_torch_nor_pyro():
    code = "import sys, pyro_vae\nprint(sorted(m for m in ('torch', 'pyro') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def _modules():
    """Every module of the tree: dotted name -> (source file, whether it is a package)."""
    found = {}
    for package, root in SOURCES.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join([package, *parts[:-1]] if is_package else [package, *parts])
            found[name] = (path, is_package)
    return found


def _runtime_nodes(tree):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never run)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = getattr(child, "test", None) if isinstance(child, ast.If) else None
            if ast.unparse(test).endswith("TYPE_CHECKING") if test is not None else False:
                pending.extend(child.orelse)
            else:
                pending.append(child)


def _imported(name, path, is_package, modules):
    """The project modules that module ``name`` imports anywhere in its file (at the top or
    inside a function, not under ``TYPE_CHECKING``), relative imports resolved; ``from P import
    m`` counts as module P.m."""
    here = name if is_package else name.rpartition(".")[0]
    edges = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            submodules = [f"{target}.{alias.name}" for alias in node.names]
            edges.update(m for m in submodules if m in modules)
            if not all(m in modules for m in submodules):
                edges.add(target)
    return {edge for edge in edges if edge in modules and edge != name}


def test_no_import_cycle_anywhere_in_the_tree():
    modules = _modules()
    graph = {name: _imported(name, *modules[name], modules) for name in modules}
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert "pyro_vae.data.sources" in graph and len(graph) > 40
