"""Typer root of the ``mosu`` command; every error becomes one line and a non-zero exit."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from mosu.core.errors import PlatformError
from mosu.core.jobspec import invalid_from_validation

app = typer.Typer(
    name="mosu",
    help="Schedule a shared GPU cluster among many tenants, and prove it on real traces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sim_app = typer.Typer(help="Replay public cluster traces through the engine.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


def _register() -> None:
    """Attach command modules; kept in one place so the tree is easy to read."""
    from mosu.cli.commands import (
        history,
        job,
        node,
        queue,
        secret,
        server,
        tenant,
        token,
        up,
        usage,
        whatif,
    )

    if not any(c.name == "up" for c in app.registered_commands):  # platform commands
        app.command("up")(up.up)
        app.command("server")(server.server)
        app.add_typer(tenant.app, name="tenant")
        app.add_typer(node.app, name="node")
        app.add_typer(job.app, name="job")
        app.command("queue")(queue.queue)
        app.command("usage")(usage.usage)
        app.add_typer(token.app, name="token")
        app.add_typer(secret.app, name="secret")
        app.add_typer(history.app, name="history")
        app.command("whatif")(whatif.whatif)
    from mosu.cli.commands import fill

    if not any(c.name == "fill" for c in sim_app.registered_commands):
        fill.register(sim_app)
    from mosu.cli.commands import replay

    if not any(c.name == "replay" for c in sim_app.registered_commands):
        replay.register(sim_app)


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:  # options checked by the shared API models
        print(f"error: {invalid_from_validation(exc)}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
