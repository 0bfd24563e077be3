"""Moving data the old system kept only in Redis into this service, once, without loss."""
