"""One module per attention method; each defines ``METHOD = MethodSpec(...)`` (see ``..registry``)."""
