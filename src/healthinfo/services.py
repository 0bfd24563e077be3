"""The application's services, built once by the composition root and shared by every channel."""

from __future__ import annotations

from dataclasses import dataclass, field

from healthinfo.audit.reads import ReadAuditor
from healthinfo.audit.runner import WriteRunner
from healthinfo.audit.service import AuditLog
from healthinfo.auth.tokens import TokenVerifier
from healthinfo.common.lifecycle import Lifecycle
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.config import Settings
from healthinfo.crypto.keystore import KeyStore
from healthinfo.fhir.bulk.wiring import Exports
from healthinfo.forwarding.wiring import Forwarding
from healthinfo.health_information.service import HealthInformationService
from healthinfo.idempotency.store import IdempotencyStore
from healthinfo.infra.metrics import Metrics
from healthinfo.infra.ratelimit import RateLimiter
from healthinfo.infra.resilient_cache import ResilientCache
from healthinfo.kits.service import KitService
from healthinfo.questionnaires.store import QuestionnaireStore
from healthinfo.realtime.hub import RoomHub
from healthinfo.replication.reads import ReplicaReads


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    uows: UnitOfWorkFactory
    writes: WriteRunner
    audit: AuditLog
    kits: KitService
    health_information: HealthInformationService
    questionnaires: QuestionnaireStore
    tokens: TokenVerifier
    metrics: Metrics
    forwarding: Forwarding
    hub: RoomHub
    replica_reads: ReplicaReads
    read_audit: ReadAuditor
    cache: ResilientCache | None = None
    idempotency: IdempotencyStore | None = None
    rate_limiter: RateLimiter | None = None
    keystore: KeyStore | None = None
    exports: Exports | None = None
    components: list[Lifecycle] = field(default_factory=list)
