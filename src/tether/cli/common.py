"""What every `tether` command shares: the Typer app, store/app options, output, errors."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console

from tether.errors import StoreNotFound, TetherError, UserError

F = TypeVar("F", bound=Callable[..., Any])

cli = typer.Typer(
    name="tether",
    help="tether: durable runtime for LLM agents. Store: --store, else $TETHER_STORE, "
    "else sqlite:///tether.db.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from tether import __version__

        typer.echo(f"tether {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print tether's version and exit",
    ),
) -> None:
    """tether: durable runtime for LLM agents."""

STORE_HELP = "Store URL (default: $TETHER_STORE, else sqlite:///tether.db)"
APP_HELP = "The app as module:attribute, e.g. myproject.workflows:app"
JSON_HELP = "Print JSON for scripts instead of tables"


def load_app(spec: str | None, store: str | None) -> Any:
    """The `tether.App` named by ``module:attribute``; or a bare client App on the store."""
    import tether

    if store:
        os.environ["TETHER_STORE"] = store
    if not spec:
        return tether.App(store)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UserError(f"--app {spec!r} must look like package.module:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import_app_module(spec, module_name)
    app = getattr(module, attribute, None)
    if not isinstance(app, tether.App):
        apps = sorted(k for k, v in vars(module).items() if isinstance(v, tether.App))
        hint = f"; it defines {', '.join(apps)}" if apps else "; it defines no tether.App"
        if app is None:
            raise UserError(f"--app {spec!r}: module {module_name} has no {attribute!r}{hint}")
        raise UserError(f"--app {spec!r}: {module_name}.{attribute} is not a tether.App{hint}")
    if store and app.store.url != store:
        # The app named its store in code; the commands follow the app, so say so.
        err_console.print(
            f"[yellow]warning:[/] --app {spec} uses the store {redact_url(app.store.url)} "
            f"named in its code, not --store {redact_url(store)}",
            highlight=False,
            soft_wrap=True,
        )
    return app


def _import_app_module(spec: str, module_name: str) -> Any:
    """Import the --app module; any failure becomes one line naming the file and line."""
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
        raise UserError(
            f"--app {spec!r}: syntax error in {where}: {exc.msg}; fix the module and retry"
        ) from None
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UserError(
                f"--app {spec!r}: cannot import {module_name!r}: {exc} (run from the project "
                "folder, or put it on PYTHONPATH)"
            ) from None
        raise UserError(f"--app {spec!r}: importing {module_name!r} failed at "
                        f"{_where(exc)}: {type(exc).__name__}: {exc}") from None
    except TetherError as exc:
        # tether refused something the module asked for: point at the module's line that asked.
        raise UserError(f"--app {spec!r}: importing {module_name!r} failed at "
                        f"{_where(exc, caller=True)}: {exc}") from None
    except Exception as exc:
        raise UserError(
            f"--app {spec!r}: importing {module_name!r} failed at {_where(exc)}: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _where(exc: BaseException, caller: bool = False) -> str:
    """``file:line`` of the innermost frame outside the import machinery (`caller`: and
    outside tether itself — the user's line that called into tether)."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    if caller:
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
        frames = [f for f in frames if not os.path.abspath(f.filename).startswith(package)] or frames
    if not frames:
        return "import"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def open_sqlite_now(app: Any) -> None:
    """Open a SQLite store at once, so a bad path is one clear error before anything else is
    printed (other stores connect on first use, with their own retries)."""
    if app.store.url.startswith("sqlite:"):
        app.portal.run(app.store.open())


def require_store(app: Any) -> Any:
    """Refuse to read from a SQLite store that does not exist yet: opening it would create an
    empty database and every run would look unknown (usually a wrong path or directory)."""
    path = getattr(app.store, "path", None)
    if (
        isinstance(path, str)
        and app.store.url.startswith("sqlite:")
        and path != ":memory:"
        and not os.path.exists(path)
    ):
        raise StoreNotFound(
            f"no tether store at {os.path.abspath(path)} ({app.store.url}); nothing was started "
            "there yet, or point --store / $TETHER_STORE at your database"
        )
    return app


def redact_url(url: str) -> str:
    """The store URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_json(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None


def print_json(value: Any) -> None:
    from tether.engine.serde import to_jsonable

    sys.stdout.write(json.dumps(to_jsonable(value, what="output"), indent=2, default=str) + "\n")


class AuditEntry:
    """What `audited` records: fill in `target` (and `detail`) as they become known."""

    def __init__(self, target: str | None, detail: dict[str, Any] | None) -> None:
        self.target = target
        self.detail: dict[str, Any] = dict(detail or {})


@contextlib.contextmanager
def audited(
    app: Any, action: str, target: str | None, who: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Iterator[AuditEntry]:
    """Record the command's mutation in the audit trail once it succeeded, as `who` (``--as``,
    else the OS login name). A refused command changes nothing, the trail included (the HTTP
    API, where requests come from others, records refusals too)."""
    from tether.access.audit import record
    from tether.access.principals import login_name

    entry = AuditEntry(target, detail)
    yield entry
    app.portal.run(record(app.store, who or login_name(), action, entry.target,
                          detail=entry.detail, via="cli"))


def handle_errors(fn: F) -> F:
    """Turn tether errors into one clear line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TetherError, ImportError) as exc:
            # ImportError here is a missing optional extra (psycopg for PostgreSQL); its message
            # names what to install. soft_wrap: one line whatever the width, for scripts.
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
