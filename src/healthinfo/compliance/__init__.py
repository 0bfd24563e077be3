"""Flows that span services for a patient's rights: export (GDPR art. 15 and 20)."""
