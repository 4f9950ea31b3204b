"""Clients for the outside systems, one module each; all go through a :class:`~opslib.session.Session`."""
