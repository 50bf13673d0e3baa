"""How the `moon` command reports bad input: one line naming the file and field, exit code 2.

Errors about the user's input (bad data, recipe, model directory, missing file) are
ValueError/OSError subclasses raised with a message that already says where and what was
expected; a traceback would only hide that message. Set MOON_DEBUG=1 to see it anyway.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from pydantic import ValidationError

from moon.data.records import format_validation_error

USER_ERROR_EXIT = 2


def user_error_message(exc: BaseException) -> str:
    """The one line printed for a user-facing error."""
    message = format_validation_error(exc, "options") if isinstance(exc, ValidationError) else str(exc)
    return f"moon: error: {message}"


@contextmanager
def user_errors() -> Iterator[None]:
    """Inside a command: bad input becomes the one-line message and exit code 2.

    main() does the same for the whole CLI; commands use this too so that the behaviour
    holds when the typer app is invoked directly (tests, embedding applications)."""
    try:
        yield
    except (ValueError, OSError) as exc:
        if os.environ.get("MOON_DEBUG"):
            raise
        print(user_error_message(exc), file=sys.stderr)
        raise typer.Exit(USER_ERROR_EXIT) from None
