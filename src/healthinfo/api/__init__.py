"""Framework glue: routers, dependencies, problem+json mapping, ASGI middleware, health."""
