"""Builds the export parts from settings, for the serve process and for ``healthinfo worker``."""

from __future__ import annotations

from dataclasses import dataclass, field

from healthinfo.audit.service import AuditLog
from healthinfo.common.lifecycle import Lifecycle
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.config import Settings
from healthinfo.crypto.keystore import KeyStore
from healthinfo.fhir.bulk.cipher import PartCipher
from healthinfo.fhir.bulk.purger import ExportPurger
from healthinfo.fhir.bulk.runner import ExportRunner
from healthinfo.fhir.bulk.source import ExportSource
from healthinfo.fhir.bulk.store import ExportStore
from healthinfo.health_information.codec import AnswerCodec
from healthinfo.questionnaires.store import QuestionnaireStore


@dataclass(frozen=True, slots=True)
class Exports:
    store: ExportStore
    cipher: PartCipher
    purger: ExportPurger
    runner: ExportRunner | None = None
    retry_after_seconds: int = 2
    components: list[Lifecycle] = field(default_factory=list)


def build_exports(
    settings: Settings,
    *,
    uows: UnitOfWorkFactory,
    keystore: KeyStore,
    codec: AnswerCodec,
    questionnaires: QuestionnaireStore,
    audit: AuditLog,
    run_jobs: bool,
) -> Exports:
    """``run_jobs``: whether this process runs export jobs (the worker always does)."""
    store = ExportStore()
    cipher = PartCipher(keystore)
    purger = ExportPurger(
        uows=uows,
        store=store,
        cipher=cipher,
        interval_seconds=settings.export_purge_interval_seconds,
    )
    runner = None
    if run_jobs:
        runner = ExportRunner(
            uows=uows,
            store=store,
            source=ExportSource(
                uows=uows, codec=codec, questionnaires=questionnaires, keystore=keystore
            ),
            cipher=cipher,
            audit=audit,
            page_size=settings.export_page_size,
            lease_seconds=settings.export_lease_seconds,
            poll_seconds=settings.export_poll_seconds,
            ttl_seconds=settings.export_ttl,
        )
    components: list[Lifecycle] = [purger]
    if runner is not None:
        components.append(runner)
    return Exports(
        store=store,
        cipher=cipher,
        purger=purger,
        runner=runner,
        retry_after_seconds=max(1, round(settings.export_poll_seconds * 2)),
        components=components,
    )
