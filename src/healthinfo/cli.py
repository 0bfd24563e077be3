"""The ``healthinfo`` command: serve, migrate, worker, token, config.

Every operator mistake ends the command with one line on stderr (``healthinfo: …``) and a
non-zero exit status, never a traceback: settings errors (one line per wrong variable) and
wrong arguments exit 2 before anything starts; a database, key store or Redis that cannot be
reached exits 1 naming what was tried and why (``preflight.py``), never with its password.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from healthinfo.auth.actor import ROLES
from healthinfo.config import JWT_SECRET_FILE, Settings, SettingsError, load_settings
from healthinfo.crypto.master_keys import MASTER_KEYS_FILE
from healthinfo.preflight import USAGE, OperatorError, check_database, check_redis

if TYPE_CHECKING:
    import uvicorn

    from healthinfo.common.database import Engines
    from healthinfo.crypto.keystore import KeyStore


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"healthinfo: invalid configuration: {line}", file=sys.stderr)
        return 2
    try:
        result: int = args.handler(settings, args)
    except OperatorError as exc:
        print(f"healthinfo: {exc}", file=sys.stderr)
        return exc.exit_code
    return result


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (it prints the whole usage first by default)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535; 0 picks a free one)")
    return port


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def _positive_seconds(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {seconds}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="healthinfo", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="worker processes (default: HEALTHINFO_WORKERS, else the CPU count with "
        "PostgreSQL and Redis, else 1)",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the newest")
    migrate.add_argument("--down", metavar="REV", help="roll back to revision REV (e.g. base)")
    migrate.set_defaults(handler=_migrate)

    token = commands.add_parser("token", help="mint a development token (HS256)")
    token.add_argument("--sub", required=True, help="the user id")
    token.add_argument("--role", action="append", default=[], choices=ROLES, help="repeatable")
    token.add_argument("--ttl", type=_positive_seconds, default=3600, help="lifetime in seconds")
    token.set_defaults(handler=_token)

    worker = commands.add_parser(
        "worker", help="forward submissions to the lab's API and run bulk exports"
    )
    worker.add_argument(
        "--metrics-port", type=_port, help="serve Prometheus metrics on this port (default: none)"
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
    legacy.add_argument(
        "--claim-codes-file",
        type=Path,
        help="write the claim codes of ownerless kits to this new file (0600), not to stdout",
    )
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


async def _open_checked(settings: Settings) -> tuple[Engines, KeyStore]:
    """The database and the key store, each reached once, or an ``OperatorError`` saying why."""
    from healthinfo.app import build_engines
    from healthinfo.crypto.factory import build_keystore

    engines = build_engines(settings)
    keystore = build_keystore(settings)
    try:
        await check_database(
            "HEALTHINFO_DATABASE_URL", settings.effective_database_url, engines.write
        )
        await check_database(
            "HEALTHINFO_KEYSTORE_URL", settings.effective_keystore_url, keystore.engine
        )
    except BaseException:
        await _close(engines, keystore)
        raise
    return engines, keystore


async def _close(engines: Engines, keystore: KeyStore) -> None:
    await engines.dispose()
    await keystore.engines.dispose()


async def _preflight_serve(settings: Settings) -> None:
    """What ``serve`` needs at start-up, reached before uvicorn starts: a wrong URL is one line.

    Once running, an outage degrades as documented (503 for the database, "degraded" for
    Redis); only at start-up is an unreachable backend treated as a configuration mistake.
    """
    await _close(*await _open_checked(settings))
    if settings.redis_url:
        try:
            await check_redis(
                "HEALTHINFO_REDIS_URL",
                settings.redis_url,
                timeout_seconds=settings.db_timeout_seconds,
            )
        except OperatorError as exc:
            if settings.redis_required_at_start:
                raise
            # An outage, not a mistake, by the operator's word: start degraded, as the service
            # runs when Redis fails later (the cache is only a cache).
            print(f"healthinfo: warning: {exc}; starting without it", file=sys.stderr)


def _serve(settings: Settings, args: argparse.Namespace) -> int:

    from healthinfo.infra.logging import configure_logging
    from healthinfo.infra.serving import run_workers

    if args.workers is not None:
        settings = _with_workers(settings, args.workers)
    asyncio.run(_preflight_serve(settings))
    configure_logging(level=settings.log_level, json=settings.log_json)
    workers = settings.effective_workers
    if workers == 1:
        _build_server(settings, host=args.host, port=args.port).run()
        return 0
    if settings.should_migrate_on_start:  # once, here, not racing in every worker
        asyncio.run(_migrate_once(settings))
    os.environ.update(
        {
            "HEALTHINFO_MIGRATE_ON_START": "false",
            "HEALTHINFO_WORKERS": str(workers),
            WORKER_HOST_ENV: args.host,
            WORKER_PORT_ENV: str(args.port),
        }
    )
    run_workers(supervisor_config(settings, args.host, args.port, workers), worker_server)
    return 0


def supervisor_config(settings: Settings, host: str, port: int, workers: int) -> uvicorn.Config:
    """The supervisor's config only binds the socket and counts workers; each worker builds its
    own (with the app) in its process: see infra/serving.WorkerProcess."""
    import uvicorn

    return uvicorn.Config(
        "healthinfo.app:create_app",
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # uvicorn's 5 s default kills a worker still importing on a busy machine, again and again.
        timeout_worker_healthcheck=settings.worker_healthcheck_seconds,
    )


GRACEFUL_SHUTDOWN_SECONDS = 10
WORKER_HOST_ENV = "HEALTHINFO_SERVE_HOST"
WORKER_PORT_ENV = "HEALTHINFO_SERVE_PORT"


def _with_workers(settings: Settings, workers: int) -> Settings:
    """The flag wins over HEALTHINFO_WORKERS, and is validated like it."""
    try:
        return load_settings(workers=workers)
    except SettingsError as exc:
        raise OperatorError(f"serve --workers {workers}: {exc}", USAGE) from None


async def _migrate_once(settings: Settings) -> None:
    from healthinfo.app import migrate_all

    engines, keystore = await _open_checked(settings)
    try:
        await migrate_all(settings, engines, keystore)
    finally:
        await _close(engines, keystore)


def worker_server() -> uvicorn.Server:
    """A ``--workers`` process's server, built in that process from its environment."""
    from healthinfo.infra.logging import configure_logging

    settings = load_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    return _build_server(
        settings, host=os.environ[WORKER_HOST_ENV], port=int(os.environ[WORKER_PORT_ENV])
    )


def _build_server(settings: Settings, *, host: str, port: int) -> uvicorn.Server:
    import uvicorn

    from healthinfo.app import create_app
    from healthinfo.infra.access_log import install_token_redaction
    from healthinfo.infra.serving import DrainingServer, http_protocol, proxy_options

    proxy_headers, trusted = proxy_options(settings.trusted_proxies)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # our handler (infra/logging.py) formats and redacts uvicorn's lines
        access_log=False,  # raw paths and query strings; api/request_log.py writes ours
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=trusted,
        http=http_protocol(settings.max_header_bytes),
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    install_token_redaction()  # after uvicorn configured its loggers
    return DrainingServer(config, exit_hooks=app.state.exit_hooks)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Upgrade the key store and the database; ``--down`` rolls the database back."""
    from healthinfo.app import migrate_all
    from healthinfo.crypto.codec import EncryptedAnswerCodec
    from healthinfo.db import migrate

    if args.down:
        _require_known_revision(args.down)

    async def run() -> None:
        engines, keystore = await _open_checked(settings)
        try:
            if args.down:
                await _downgrade(engines, keystore, args.down)
            else:
                await migrate_all(settings, engines, keystore)
            print(_revision_line(await migrate.current_revision(engines.write)))
        finally:
            await _close(engines, keystore)

    async def _downgrade(engines: Engines, keystore: KeyStore, revision: str) -> None:
        from alembic.util import CommandError

        try:
            await migrate.downgrade(engines.write, revision, codec=EncryptedAnswerCodec(keystore))
        except CommandError as exc:  # e.g. -9 with only 7 migrations applied
            raise OperatorError(
                f"migrate --down {revision}: {exc}; {_known_revisions()}", USAGE
            ) from None

    asyncio.run(run())
    return 0


def _known_revisions() -> str:
    from healthinfo.db import migrate

    known = ", ".join(["base", *migrate.revisions_oldest_first()])
    return f"known revisions: {known} (or -N to go N steps down)"


def _require_known_revision(revision: str) -> None:
    """Alembic's own refusal is a traceback; name the revisions there are instead."""
    import re

    from healthinfo.db import migrate

    if revision == "base" or re.fullmatch(r"-[1-9][0-9]*", revision):
        return
    if revision not in migrate.revisions_oldest_first():
        raise OperatorError(
            f"migrate --down: no revision {revision!r}; {_known_revisions()}", USAGE
        )


def _revision_line(current: str | None) -> str:
    """Never "revision None": a schema with no migration applied is at ``base``."""
    from healthinfo.db import migrate

    if current is None:
        return "database at base (no migration applied)"
    head = " (head)" if current == migrate.head_revision() else ""
    return f"database at revision {current}{head}"


def _rotate_keys(settings: Settings, _args: argparse.Namespace) -> int:
    """Re-wrap every data key with the newest master key (the last in HEALTHINFO_MASTER_KEYS)."""
    from healthinfo.crypto.factory import build_keystore
    from healthinfo.db import migrate

    async def run() -> int:
        keystore = build_keystore(settings)
        try:
            await check_database(
                "HEALTHINFO_KEYSTORE_URL", settings.effective_keystore_url, keystore.engine
            )
            await migrate.upgrade(keystore.engine, location=migrate.KEYSTORE_MIGRATIONS_DIR)
            return await keystore.rewrap()
        finally:
            await keystore.engines.dispose()

    changed = asyncio.run(run())
    print(f"re-wrapped {changed} data keys with master key {settings.keyring().active_id}")
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run the relay (when forwarding is configured) and the export runner until SIGTERM/SIGINT;
    any number of workers may run (docs/forwarding.md, docs/fhir.md)."""
    from healthinfo.forwarding.worker import run_worker
    from healthinfo.infra.error_tracking import configure_error_tracking
    from healthinfo.infra.logging import configure_logging

    configure_logging(level=settings.log_level, json=settings.log_json)
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    configure_error_tracking(dsn, environment=settings.environment)
    address = None if args.metrics_port is None else (args.metrics_host, args.metrics_port)
    asyncio.run(run_worker(settings, metrics_address=address))
    return 0


def _import_legacy(settings: Settings, args: argparse.Namespace) -> int:
    """Prints a JSON report; exit 0 when the run completed, whatever it found invalid.

    ``--dry-run`` writes nothing anywhere: no migration, no data key (``DryRunKeyStore``), and
    every checked write rolled back; so it refuses a schema that is not at head.
    """
    from healthinfo.app import build_services, migrate_all
    from healthinfo.legacy.import_redis import DryRunKeyStore, ImportOptions, LegacyImporter

    options = ImportOptions(
        pattern=args.pattern,
        kit_id_pattern=args.kit_id_pattern,
        answers_field=args.answers_field,
        owner_field=args.owner_field or None,
        dry_run=args.dry_run,
    )

    async def run() -> dict[str, object]:
        engines, keystore = await _open_checked(settings)
        try:
            await check_redis("--redis-url", args.redis_url)
            if not args.dry_run and settings.should_migrate_on_start:
                await migrate_all(settings, engines, keystore)
            await _require_schemas_at_head(engines, keystore, dry_run=args.dry_run)
            if args.dry_run:
                keystore = DryRunKeyStore(keystore.engines, settings.keyring())
            services = build_services(settings, engines, keystore)
            report = await LegacyImporter(services, options).run(args.redis_url)
        finally:
            await _close(engines, keystore)
        if args.claim_codes_file is None:
            return {"dryRun": args.dry_run, **report.as_dict()}
        _write_private(args.claim_codes_file, json.dumps(report.claim_codes_as_list(), indent=2))
        return {
            "dryRun": args.dry_run,
            **report.as_dict(with_claim_codes=False),
            "claimCodesFile": str(args.claim_codes_file),
            "claimCodesWritten": len(report.claim_codes),
        }

    print(json.dumps(asyncio.run(run()), indent=2))
    return 0


async def _require_schemas_at_head(
    engines: Engines, keystore: KeyStore | None = None, *, dry_run: bool = False
) -> None:
    """Work on a schema behind the code's fails on its first statement: say so, once."""
    from healthinfo.db import migrate
    from healthinfo.db.schema_state import SchemaState, schema_state

    states: list[tuple[str, SchemaState]] = [("database", await schema_state(engines.write))]
    if keystore is not None:
        location = migrate.KEYSTORE_MIGRATIONS_DIR
        states.append(("key store", await schema_state(keystore.engine, location=location)))
    for name, state in states:
        if not state.at_head:
            why = "--dry-run migrates nothing, and the" if dry_run else "the"
            raise OperatorError(
                f"{why} {name} schema is {state.describe()}: run healthinfo migrate first"
            )


def _write_private(path: Path, content: str) -> None:
    """Claim codes are secrets: a new file only its owner can read (never overwritten)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content + "\n")


def _audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when every chain is intact and holds every head the checkpoints pinned; 1 naming
    the first broken link (or the checkpoint that is not genuine); 2 for no such kit."""
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
            await check_database(
                "HEALTHINFO_DATABASE_URL", settings.effective_database_url, engines.write
            )
            await _require_schemas_at_head(engines)
            async with UnitOfWorkFactory(engines).read() as uow:
                if args.kit is not None:
                    await _require_kit(uow, args.kit)
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


async def _require_kit(uow: Any, kit_id: str) -> None:
    """A kit is known by its row or by its audit trail (refusals and erasures leave one)."""
    from sqlalchemy import exists, or_, select

    from healthinfo.db.models import AuditEvent, Kit

    known = await uow.session.scalar(
        select(
            or_(
                exists().where(Kit.kit_id == kit_id),
                exists().where(AuditEvent.kit_id == kit_id),
            )
        )
    )
    if not known:
        raise OperatorError(f"audit verify: no such kit: {kit_id}", USAGE)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from healthinfo.auth.tokens import mint_token

    if settings.jwt_secret is None and (settings.jwt_public_keys or settings.jwt_jwks_url):
        print(
            "healthinfo: tokens are verified with public keys here; mint them with your issuer",
            file=sys.stderr,
        )
        return 2
    print(
        mint_token(
            _server_secret(settings),
            sub=args.sub,
            roles=args.role,
            ttl_seconds=args.ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return 0


def _server_secret(settings: Settings) -> bytes:
    """The secret the server verifies with: configured, or the one ``serve`` generated.

    Never generated here: a secret minted by this command would be one the server does not
    know (another data directory, or a server that already started with its own).
    """
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode()
    path = settings.data_dir / JWT_SECRET_FILE
    if not path.is_file():
        raise OperatorError(
            f"no signing secret: HEALTHINFO_JWT_SECRET is not set and {path.resolve()} does not "
            "exist; `healthinfo serve` creates it on its first start: run this with "
            "HEALTHINFO_DATA_DIR set to the server's data directory (or HEALTHINFO_JWT_SECRET "
            "set to the server's secret)",
            USAGE,
        )
    return path.read_text(encoding="ascii").strip().encode()


SECRET_SETTINGS = frozenset({"jwt_secret", "forward_secret", "master_keys", "sentry_dsn"})
MASK = "**********"


def _config(settings: Settings, _args: argparse.Namespace) -> int:
    print(json.dumps(effective_configuration(settings), indent=2))
    return 0


def effective_configuration(settings: Settings) -> dict[str, object]:
    """Every setting as it takes effect, defaults included: a value, or what being unset does.

    Never ``null``: an operator reading it wants to know what the service will do. Secrets are
    masked (set ones) or say where they come from (generated ones); URLs lose their passwords.
    """
    shown: dict[str, Any] = settings.model_dump(mode="json")
    shown["database_url"] = _mask_url(settings.effective_database_url)
    shown["keystore_url"] = _mask_url(settings.effective_keystore_url)
    shown["migrate_on_start"] = settings.should_migrate_on_start
    shown["database_replica_urls"] = [_mask_url(url) for url in settings.database_replica_urls]
    if settings.redis_url:
        shown["redis_url"] = _mask_url(settings.redis_url)
    if settings.forward_url:
        shown["forward_url"] = _mask_forward_url(settings.forward_url)
    for key in SECRET_SETTINGS:
        if shown.get(key) is not None:
            shown[key] = MASK
    if settings.jwt_secret is None and not (settings.jwt_public_keys or settings.jwt_jwks_url):
        shown["jwt_secret"] = f"{MASK} (generated into {settings.data_dir / JWT_SECRET_FILE})"
    if settings.master_keys is None:
        shown["master_keys"] = f"{MASK} (generated into {settings.data_dir / MASTER_KEYS_FILE})"
    for key, value in shown.items():
        if value is None:
            shown[key] = UNSET_MEANS.get(key, "unset")
    return {f"HEALTHINFO_{k.upper()}": v for k, v in shown.items()}


# What an unset optional setting does (anything not listed shows as "unset").
UNSET_MEANS = {
    "redis_url": "unset: in-process cache, events bus and rate limits",
    "jwt_secret": "unset: tokens verified with the public keys",
    "jwt_jwks_url": "unset: no JWKS",
    "jwt_issuer": "unset: iss not checked",
    "jwt_audience": "unset: aud not checked",
    "otel_exporter_endpoint": "unset: the OTEL_EXPORTER_OTLP_* variables",
    "sentry_dsn": "unset: no error tracking",
    "forward_url": "unset: forwarding off",
    "forward_secret": "unset: forwarding off",
}


def _mask_forward_url(url: str) -> str:
    """Credentials in the lab's URL (user info, query) are secrets too."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except Exception:
        return MASK
    masked = parsed.copy_with(
        username=None, password=None, query=MASK.encode() if parsed.query else None
    )
    return str(masked)


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return MASK


if __name__ == "__main__":
    raise SystemExit(main())
