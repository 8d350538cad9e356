"""Plans: the store operations as sans-I/O generators (they yield
:class:`~redmodel._plan.Batch` es and return results; the stores only drive them).

- ``_objects``: save, get, update, delete, expire, scan... of model objects;
- ``_atomic``: ``incr_fields``, the server-side conditional update of several fields.
"""
