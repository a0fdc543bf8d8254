"""The HTTP recommendation service: ``python -m serve`` (see ``serve.app``)."""
