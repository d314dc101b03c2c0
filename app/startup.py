"""The error that stops a command before it does any work: its own module, so that the
deriving process (app/cdr/worker.py) gets it without the settings and pydantic."""

from __future__ import annotations


class StartupError(Exception):
    """A mistake in the set-up that stops a command before it does any work. The message
    names the thing (file, address, URL, setting) and says what to do; `exit_code` is the
    command's exit status, documented in the README."""

    exit_code = 3
