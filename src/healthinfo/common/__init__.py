"""Domain-free building blocks: database engines, the unit of work, pagination, time.

(The design doc calls this ``kit/``; in a service about test *kits* that name would mislead.)
"""
