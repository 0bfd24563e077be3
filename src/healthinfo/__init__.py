"""Health Information Service: durable, audited, access-checked questionnaire answers."""

__version__ = "0.1.0"
