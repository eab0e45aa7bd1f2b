"""One module per cache method; each defines ``CACHES = [CacheSpec(...), ...]`` (see ``..registry``)."""
