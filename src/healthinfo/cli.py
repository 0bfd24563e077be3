"""The ``healthinfo`` command: serve, migrate, token, config.

Settings errors end the process with one line per wrong variable and exit code 2, before
anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from healthinfo.config import Settings, SettingsError, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"healthinfo: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    result: int = args.handler(settings, args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthinfo", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the newest")
    migrate.add_argument("--down", metavar="REV", help="roll back to revision REV (e.g. base)")
    migrate.set_defaults(handler=_migrate)

    token = commands.add_parser("token", help="mint a development token (HS256)")
    token.add_argument("--sub", required=True, help="the user id")
    token.add_argument("--role", action="append", default=[], help="admin or auditor; repeatable")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(handler=_token)

    config = commands.add_parser("config", help="print the effective configuration, secrets masked")
    config.set_defaults(handler=_config)
    return parser


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from healthinfo.app import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from healthinfo.app import build_engines
    from healthinfo.db import migrate

    async def run() -> None:
        engines = build_engines(settings)
        try:
            if args.down:
                await migrate.downgrade(engines.write, args.down)
            else:
                await migrate.upgrade(engines.write)
            print(f"database at revision {await migrate.current_revision(engines.write)}")
        finally:
            await engines.dispose()

    asyncio.run(run())
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from healthinfo.auth.tokens import mint_token

    secret = settings.hs_secret()
    if secret is None:
        print(
            "healthinfo: tokens are verified with public keys here; mint them with your issuer",
            file=sys.stderr,
        )
        return 2
    print(
        mint_token(
            secret,
            sub=args.sub,
            roles=args.role,
            ttl_seconds=args.ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return 0


def _config(settings: Settings, _args: argparse.Namespace) -> int:
    shown = settings.model_dump(mode="json")
    for key, value in shown.items():
        if key in {"jwt_secret"} and value is not None:
            shown[key] = "**********"
    if settings.database_url:
        shown["database_url"] = _mask_url(settings.database_url)
    if settings.redis_url:
        shown["redis_url"] = _mask_url(settings.redis_url)
    print(json.dumps({f"HEALTHINFO_{k.upper()}": v for k, v in shown.items()}, indent=2))
    return 0


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "**********"


if __name__ == "__main__":
    raise SystemExit(main())
