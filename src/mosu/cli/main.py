"""Typer root of the ``mosu`` command; every error becomes one line and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from mosu.core.errors import PlatformError, Unauthorized
from mosu.core.jobspec import invalid_from_validation

ROOT_HELP = (
    "Schedule a shared GPU cluster among many tenants, and prove it on real traces.\n\n"
    "Which server and identity: MOSU_URL and MOSU_TOKEN, else the client config "
    "(MOSU_CONFIG, default ~/.mosu/client.json) that 'mosu up' and 'mosu login' write, "
    "else http://127.0.0.1:8765 without a token."
)

app = typer.Typer(
    name="mosu",
    help=ROOT_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from mosu import __version__

        print(f"mosu {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    pass


sim_app = typer.Typer(help="Replay public cluster traces through the engine.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


def _no_type_for_flags() -> None:
    """Help shows each option's value type; a flag (``--follow``, ``--help``) takes no value,
    so it shows none (this Typer prints ``<bool>`` for it), nor does an argument whose
    metavar describes it."""
    from typer import core

    shown = getattr(core.TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_mosu_flags", False):
        return

    def display_type_rich(self: core.TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._mosu_flags = True  # type: ignore[attr-defined]
    core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    argument_type = core.TyperArgument.display_type_rich

    def argument_display(self: core.TyperArgument, ctx: Any) -> str | None:
        # An argument given a metavar ("[SPEC] [-- COMMAND...]") has said what it takes.
        return None if self.metavar else argument_type(self, ctx)

    core.TyperArgument.display_type_rich = argument_display  # type: ignore[method-assign]


def _register() -> None:
    """Attach command modules; kept in one place so the tree is easy to read."""
    from mosu.cli.commands import (
        cluster,
        credits,
        history,
        job,
        login,
        node,
        queue,
        rates,
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
        app.command("login")(login.login)
        app.command("server")(server.server)
        app.add_typer(tenant.app, name="tenant")
        app.add_typer(node.app, name="node")
        app.command("cluster")(cluster.cluster)
        app.add_typer(job.app, name="job")
        app.command("queue")(queue.queue)
        app.command("usage")(usage.usage)
        app.add_typer(token.app, name="token")
        app.add_typer(secret.app, name="secret")
        app.add_typer(credits.app, name="credits")
        app.add_typer(rates.app, name="rates")
        app.add_typer(history.app, name="history")
        app.command("whatif")(whatif.whatif)
    from mosu.cli.commands import mock_llm

    if not any(c.name == "mock-llm" for c in app.registered_commands):
        app.command("mock-llm")(mock_llm.mock_llm)
    from mosu.cli.commands import gateway, key, service

    if not any(c.name == "gateway" for c in app.registered_commands):
        app.command("gateway")(gateway.gateway)
        app.add_typer(service.app, name="service")
        app.add_typer(key.app, name="key")
    from mosu.cli.commands import fill, policy

    if not any(g.name == "policy" for g in app.registered_groups):
        app.add_typer(policy.app, name="policy")

    if not any(c.name == "fill" for c in sim_app.registered_commands):
        fill.register(sim_app)
    from mosu.cli.commands import replay

    if not any(c.name == "replay" for c in sim_app.registered_commands):
        replay.register(sim_app)
    from mosu.cli.commands import generate

    if not any(c.name == "generate" for c in sim_app.registered_commands):
        generate.register(sim_app)


def _how_to_sign_in(exc: Unauthorized) -> str:
    """The server's 401 in the CLI's terms: where the token came from and how to fix it."""
    from mosu.cli import config

    cfg = config.load()
    if cfg.token is None:
        return (
            f"no token for {cfg.url}: run 'mosu login' (saves the URL and a token) "
            "or set MOSU_TOKEN"
        )
    return (
        f"{exc.message} (from {cfg.token_source}) at {cfg.url}: run 'mosu login' or set MOSU_TOKEN"
    )


_CLICK_ERROR: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
"""Click's usage errors' base class (Typer may bundle its own copy of click)."""


def _usage_error(exc: Any) -> str:
    """A usage error in one line, pointing at the command's help."""
    message = exc.format_message().rstrip(".").replace("Value error, ", "")
    # Typer checks values with pydantic; its wording names the parser, not the user's slip.
    message = message.replace(
        "Input should be a valid integer, unable to parse string as an integer",
        "not a whole number",
    ).replace("Input should be a valid number, unable to parse string as a number", "not a number")
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    return f"{message} (see '{ctx.command_path} --help')"


def main(argv: list[str] | None = None) -> None:
    _no_type_for_flags()
    _register()
    try:
        # Not standalone: click's usage errors would otherwise print a framed box.
        code = app(args=argv, standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except _CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `mosu job`: the help, as asked
            exc.show()
            sys.exit(0)
        print(f"error: {_usage_error(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Unauthorized as exc:
        print(f"error: {_how_to_sign_in(exc)}", file=sys.stderr)
        sys.exit(2)
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
