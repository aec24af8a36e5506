"""Real ``pyro-vae`` processes without paying the start-up each time.

A fresh ``python -m pyro_vae`` spends 2-5 s importing torch, its compiler front end and Pyro
before it reads its arguments; the suite starts well over a hundred of them. This server
imports those once and then, for each request, forks a child that is a real process of its
own: its own working folder, environment, standard streams and exit code, running the
console-script entry point (:func:`pyro_vae.cli.run`) exactly as ``python -m pyro_vae`` does,
atexit handlers and all, or a script (``python benchmarks/X.py``) as ``__main__``. Only what a
process does *before* its imports differs; the tests of start-up itself (a signal during the
imports, what ``import pyro_vae`` loads, the ``pyro-vae`` script) start fresh interpreters.

Protocol, one JSON object a line: the client writes ``{"argv", "cwd", "env", "stdout",
"stderr"}`` (and ``"script"`` for a script); the server answers ``{"pid"}`` at once, then
``{"returncode"}`` when the child ends.
"""

from __future__ import annotations

import atexit
import json
import os
import sys

#: What a fresh process spends its start-up on (measured in docs/testing.md), loaded once.
PRELOAD = ("pyro", "torch._dynamo", "pyro_vae.cli", "pyro_vae.training", "pyro_vae.compare")


def _child(request: dict) -> None:
    """Become the requested process (``pyro-vae`` or a script); never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            handle = os.open(path, flags)
            os.dup2(handle, fd)
            os.close(handle)
        sys.stdin = open(os.devnull)  # not the server's buffered requests
        script = request.get("script")
        if script:  # ``python SCRIPT ARGS``: its folder first on the path, as python puts it
            sys.argv = [script, *request["argv"]]
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            _run_script(script)
        else:
            sys.argv = ["pyro-vae", *request["argv"]]
            from pyro_vae.cli import run

            run()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, int | None):
            print(done.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter ends on an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        os._exit(code)


def _run_script(script: str) -> None:
    """Run ``script`` as ``__main__``; an uncaught exception ends it as python does."""
    import runpy
    import traceback

    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001 - what the interpreter prints, then exit status 1
        traceback.print_exc()
        raise SystemExit(1) from None


def serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
