"""The `moon` command: thin typer commands that parse, call one library function, print.

Each stage owns one module under moon/cli/ exposing a typer sub-app or command; this file
only wires them together, so `moon --help` lists exactly the stages that exist.
"""

from __future__ import annotations

import os
import sys

import typer

from moon.cli.errors import USER_ERROR_EXIT, user_error_message

app = typer.Typer(name="moon", help="MOON toolkit: product representation foundation models.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

from moon.cli import data as _data  # noqa: E402
app.add_typer(_data.app, name="data")
from moon.cli import index as _index  # noqa: E402
app.command("export")(_index.export)
app.add_typer(_index.app, name="index")
app.command("search")(_index.search)
from moon.cli import bench as _bench  # noqa: E402
app.add_typer(_bench.app, name="bench")
from moon.cli import crop as _crop  # noqa: E402
app.add_typer(_crop.app, name="crop")
from moon.cli import mine as _mine  # noqa: E402
app.command("mine")(_mine.mine)
from moon.cli import train as _train  # noqa: E402
app.command("train")(_train.train)
from moon.cli import encode as _encode, model as _model  # noqa: E402
app.command("encode")(_encode.encode)
app.add_typer(_model.app, name="model")
from moon.cli import quickstart as _quickstart  # noqa: E402
app.command("quickstart")(_quickstart.quickstart)
from moon.cli import report as _report  # noqa: E402
app.command("report")(_report.report)


def main() -> None:
    """Run the CLI; user-facing errors become one clear line and exit code 2 (moon.cli.errors)."""
    try:
        app()
    except (ValueError, OSError) as exc:
        if os.environ.get("MOON_DEBUG"):
            raise
        print(user_error_message(exc), file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    except KeyboardInterrupt:
        print("moon: interrupted", file=sys.stderr)
        sys.exit(130)
