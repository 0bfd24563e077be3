"""The ``healthinfo`` command: serve, migrate, worker, token, config.

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

    worker = commands.add_parser("worker", help="forward submissions to the lab's API")
    worker.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on this port (default: none)"
    )
    worker.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port")
    worker.set_defaults(handler=_worker)

    legacy = commands.add_parser(
        "import-legacy-redis", help="import the old system's Redis entries (docs/legacy-import.md)"
    )
    legacy.add_argument("--redis-url", required=True, help="the old system's Redis")
    legacy.add_argument("--pattern", default="health-info:*", help="SCAN pattern of the keys")
    legacy.add_argument(
        "--kit-id-pattern", default=r"^.*:(?P<kit>[^:]+)$", help="regex with a 'kit' group"
    )
    legacy.add_argument("--answers-field", default="answers", help="'' = the whole document")
    legacy.add_argument("--owner-field", default="userId", help="'' = no owner in the data")
    legacy.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    legacy.set_defaults(handler=_import_legacy)

    rotate = commands.add_parser(
        "rotate-keys", help="re-wrap all data keys with the newest master key"
    )
    rotate.set_defaults(handler=_rotate_keys)

    audit = commands.add_parser("audit", help="audit trail tools")
    audit_commands = audit.add_subparsers(required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="check the audit hash chains")
    verify.add_argument("--kit", help="only this kit's chain")
    verify.set_defaults(handler=_audit_verify)
    checkpoint = audit_commands.add_parser(
        "checkpoint", help="write a signed checkpoint of the audit chain heads"
    )
    checkpoint.set_defaults(handler=_audit_checkpoint)

    config = commands.add_parser("config", help="print the effective configuration, secrets masked")
    config.set_defaults(handler=_config)
    return parser


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from healthinfo.app import create_app
    from healthinfo.infra.access_log import install_token_redaction
    from healthinfo.infra.logging import configure_logging
    from healthinfo.infra.serving import DrainingServer

    configure_logging(level=settings.log_level, json=settings.log_json)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # our handler (infra/logging.py) formats and redacts uvicorn's lines
        access_log=False,  # raw paths and query strings; api/request_log.py writes ours
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )
    install_token_redaction()  # after uvicorn configured its loggers
    DrainingServer(config, exit_hooks=app.state.exit_hooks).run()
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Upgrade the key store and the database; ``--down`` rolls the database back."""
    from healthinfo.app import build_engines, migrate_all
    from healthinfo.crypto.codec import EncryptedAnswerCodec
    from healthinfo.crypto.factory import build_keystore
    from healthinfo.db import migrate

    async def run() -> None:
        engines = build_engines(settings)
        keystore = build_keystore(settings)
        try:
            if args.down:
                await migrate.downgrade(
                    engines.write, args.down, codec=EncryptedAnswerCodec(keystore)
                )
            else:
                await migrate_all(settings, engines, keystore)
            print(f"database at revision {await migrate.current_revision(engines.write)}")
        finally:
            await engines.dispose()
            await keystore.engines.dispose()

    asyncio.run(run())
    return 0


def _rotate_keys(settings: Settings, _args: argparse.Namespace) -> int:
    """Re-wrap every data key with the newest master key (the last in HEALTHINFO_MASTER_KEYS)."""
    from healthinfo.crypto.factory import build_keystore
    from healthinfo.db import migrate

    async def run() -> int:
        keystore = build_keystore(settings)
        try:
            await migrate.upgrade(keystore.engine, location=migrate.KEYSTORE_MIGRATIONS_DIR)
            return await keystore.rewrap()
        finally:
            await keystore.engines.dispose()

    changed = asyncio.run(run())
    print(f"re-wrapped {changed} data keys with master key {settings.keyring().active_id}")
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run the relay until SIGTERM/SIGINT; any number of workers may run (docs/forwarding.md)."""
    from healthinfo.forwarding.worker import run_worker
    from healthinfo.infra.error_tracking import configure_error_tracking
    from healthinfo.infra.logging import configure_logging

    if settings.forward_url is None:
        print(
            "healthinfo: HEALTHINFO_FORWARD_URL is not set, so there is nothing to forward",
            file=sys.stderr,
        )
        return 2
    configure_logging(level=settings.log_level, json=settings.log_json)
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    configure_error_tracking(dsn, environment=settings.environment)
    address = None if args.metrics_port is None else (args.metrics_host, args.metrics_port)
    asyncio.run(run_worker(settings, metrics_address=address))
    return 0


def _import_legacy(settings: Settings, args: argparse.Namespace) -> int:
    """Prints a JSON report; exit 0 when the run completed, whatever it found invalid."""
    from healthinfo.app import build_engines, build_services, migrate_all
    from healthinfo.crypto.factory import build_keystore
    from healthinfo.legacy.import_redis import ImportOptions, LegacyImporter

    options = ImportOptions(
        pattern=args.pattern,
        kit_id_pattern=args.kit_id_pattern,
        answers_field=args.answers_field,
        owner_field=args.owner_field or None,
        dry_run=args.dry_run,
    )

    async def run() -> dict[str, object]:
        engines = build_engines(settings)
        keystore = build_keystore(settings)
        try:
            if settings.should_migrate_on_start:
                await migrate_all(settings, engines, keystore)
            services = build_services(settings, engines, keystore)
            report = await LegacyImporter(services, options).run(args.redis_url)
        finally:
            await engines.dispose()
            await keystore.engines.dispose()
        return {"dryRun": args.dry_run, **report.as_dict()}

    print(json.dumps(asyncio.run(run()), indent=2))
    return 0


def _audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when every chain is intact and holds every head the checkpoints pinned; 1 naming
    the first broken link (or the checkpoint that is not genuine)."""
    from healthinfo.app import build_engines
    from healthinfo.audit import chain
    from healthinfo.audit.checkpoints import CheckpointError, CheckpointStore
    from healthinfo.common.uow import UnitOfWorkFactory

    keys = settings.audit_keyring()
    store = CheckpointStore(settings.effective_audit_checkpoint_dir, keys)
    try:
        pins, newest = store.pins(args.kit)
    except CheckpointError as exc:
        print(f"audit checkpoints broken: {exc}")
        return 1

    async def run() -> tuple[int, chain.BrokenLink | None]:
        engines = build_engines(settings)
        try:
            async with UnitOfWorkFactory(engines).read() as uow:
                return await chain.verify(uow, keys, args.kit, pins)
        finally:
            await engines.dispose()

    checked, broken = asyncio.run(run())
    if broken is not None:
        print(
            f"audit chain broken: kit {broken.kit_id}, event {broken.event_id} {broken.reason} "
            f"({checked} events checked)"
        )
        return 1
    against = (
        f"against checkpoint {newest}"
        if newest is not None
        else f"(no checkpoint in {store.directory}: deleted newest events cannot be detected)"
    )
    print(f"audit chain intact: {checked} events checked {against}")
    return 0


def _audit_checkpoint(settings: Settings, _args: argparse.Namespace) -> int:
    """Write one checkpoint now; the service writes one every checkpoint interval too."""
    from healthinfo.app import build_engines
    from healthinfo.audit.checkpoints import CheckpointStore, make_checkpoint
    from healthinfo.common.uow import UnitOfWorkFactory

    store = CheckpointStore(settings.effective_audit_checkpoint_dir, settings.audit_keyring())

    async def run() -> int | None:
        engines = build_engines(settings)
        try:
            made = await make_checkpoint(UnitOfWorkFactory(engines), store)
        finally:
            await engines.dispose()
        return None if made is None else made.number

    number = asyncio.run(run())
    if number is None:
        print("healthinfo: another instance is writing a checkpoint; try again", file=sys.stderr)
        return 1
    print(f"audit checkpoint {number} written to {store.path(number)}")
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
        if key in {"jwt_secret", "forward_secret", "master_keys"} and value is not None:
            shown[key] = "**********"
    if settings.database_url:
        shown["database_url"] = _mask_url(settings.database_url)
    shown["database_replica_urls"] = [_mask_url(url) for url in settings.database_replica_urls]
    if settings.redis_url:
        shown["redis_url"] = _mask_url(settings.redis_url)
    if settings.keystore_url:
        shown["keystore_url"] = _mask_url(settings.keystore_url)
    if settings.forward_url:
        shown["forward_url"] = _mask_forward_url(settings.forward_url)
    print(json.dumps({f"HEALTHINFO_{k.upper()}": v for k, v in shown.items()}, indent=2))
    return 0


def _mask_forward_url(url: str) -> str:
    """Credentials in the lab's URL (user info, query) are secrets too."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except Exception:
        return "**********"
    masked = parsed.copy_with(
        username=None, password=None, query=b"**********" if parsed.query else None
    )
    return str(masked)


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "**********"


if __name__ == "__main__":
    raise SystemExit(main())
