"""Build hook: compile the per-message hot path with mypyc where this machine can.

The modules are listed once, in pyproject.toml's `[tool.cdrecon] compiled`. They are compiled
when mypyc, a C compiler and Python's headers are present and CDRECON_COMPILE is not 0;
otherwise they install as the pure Python they are. Everything else about the package is in
pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup

ROOT = Path(__file__).resolve().parent
# Commands that build extension modules. Metadata and sdists need no compiling, and an
# editable install must not: a compiled module beside its source shadows every later edit.
BUILDING = {"build", "build_ext", "bdist_wheel", "install"}
EDITABLE = {"develop", "editable_wheel"}


def compiled_modules() -> list[str]:
    """The hot path's modules, as paths from the checkout (pyproject.toml's list)."""
    with (ROOT / "pyproject.toml").open("rb") as config:
        modules: list[str] = tomllib.load(config)["tool"]["cdrecon"]["compiled"]
    return modules


def why_pure(commands: set[str]) -> str | None:
    """Why this build installs the hot path as pure Python, or None to compile it."""
    if commands & EDITABLE or not commands & BUILDING:
        return "not a build of extension modules (metadata, sdist or an editable install)"
    if os.environ.get("CDRECON_COMPILE", "1") == "0":
        return "CDRECON_COMPILE=0"
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler} is not on PATH)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "Python's C headers are missing (Debian: python3-dev)"
    return None


# How mypyc type-checks the modules it compiles. pip's isolated build environment has none of
# cdrecon's dependencies, nor pydantic for [tool.mypy]'s plugin: there they are unknown (Any).
# Hiding site-packages everywhere makes a build in a full environment (make test-compiled,
# bench.compiled) generate the same C as the wheel; make lint keeps the strict check.
MYPY_FLAGS = ["--config-file=", "--ignore-missing-imports", "--no-site-packages"]


def extensions() -> list[Any]:
    reason = why_pure(set(sys.argv[1:]))
    if reason is not None:
        if set(sys.argv[1:]) & BUILDING:
            print(f"cdrecon: the hot path installs as pure Python: {reason}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    os.chdir(ROOT)  # mypyc takes the modules' paths, and their package roots, from here
    modules = compiled_modules()
    print(f"cdrecon: compiling {len(modules)} modules with mypyc", file=sys.stderr)
    return list(mypycify([*MYPY_FLAGS, *modules], group_name="cdrecon"))


setup(ext_modules=extensions())
