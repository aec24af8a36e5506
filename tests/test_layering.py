"""Dependencies point one way: application -> inference -> models -> core.

Checked on the source (imports in every module of ``models/`` and ``inference/``) and on a
fresh interpreter (what importing the library pulls in)."""

import ast
import subprocess
import sys

import pytest
from common import REPO

#: The application-independent core every layer may use.
CORE = {"pyro_vae.errors", "pyro_vae.registry", "pyro_vae.validate"}
#: What each layer may import from this project, besides itself.
ALLOWED = {
    "models": CORE,
    "inference": CORE | {"pyro_vae.models"},
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
    own = f"pyro_vae.{layer}"
    for path in sorted((REPO / layer).glob("*.py")):
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
