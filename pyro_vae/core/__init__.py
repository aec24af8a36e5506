"""What every layer may import: the user-facing error types (:mod:`.errors`), name -> factory
registries (:mod:`.registry`) and checks of single values (:mod:`.validate`).

``pyro_vae.models`` and ``pyro_vae.inference`` import nothing else from ``pyro_vae``; the core
imports nothing from any layer above it.
"""
