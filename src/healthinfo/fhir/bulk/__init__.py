"""FHIR Bulk Data Access (v2) system-level export: ``GET /v1/fhir/$export`` and its job.

The kick-off records a job (``store``); a runner (``runner``) in the worker, or in the serve
process when embedded, claims it with a lease and writes its output page by page: each page is
read from the database (a replica when configured), rendered as NDJSON, encrypted with the
job's own data key (``cipher``) and committed together with the job's cursor and one audit
event per exported kit. A runner killed at any point leaves the last committed page as the
truth: another runner claims the job once the lease ends and goes on from the cursor, so each
kit appears exactly once. Output lives in the database (``export_parts``), read back page by
page for the client and deleted after ``HEALTHINFO_EXPORT_TTL`` (``purger``). See docs/fhir.md.
"""

from healthinfo.common.audit_actions import BULK_EXPORT

__all__ = ["BULK_EXPORT"]  # the audit action of one kit written to an export (one event per kit)
