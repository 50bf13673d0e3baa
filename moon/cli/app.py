"""The `moon` command: thin typer commands that parse, call one library function, print.

Each stage owns one module under moon/cli/ exposing a typer sub-app or command; this file
only wires them together, so `moon --help` lists exactly the stages that exist.
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(name="moon", help="MOON toolkit: product representation foundation models.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


def main() -> None:
    """Run the CLI; user-facing errors become one clear line and exit code 2.

    Errors about the user's input (bad data, recipe, model directory, missing file) are
    ValueError/OSError subclasses raised with a message naming the file and field; a
    traceback would only hide that message. Set MOON_DEBUG=1 to see the traceback anyway.
    """
    try:
        app()
    except (ValueError, OSError) as exc:
        if os.environ.get("MOON_DEBUG"):
            raise
        print(f"moon: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("moon: interrupted", file=sys.stderr)
        sys.exit(130)
