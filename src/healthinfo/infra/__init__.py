"""Ports and adapters around the domain: metrics, logging, cache, bus."""
