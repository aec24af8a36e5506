"""``python -m pyro_vae``: the same as the ``pyro-vae`` command."""

from .cli import run

run()
