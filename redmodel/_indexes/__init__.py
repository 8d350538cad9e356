"""Secondary indexes: their definition, their upkeep, and the queries that read them.

- ``_specs``: index specs compiled from a declaration, entry keys, the index scripts;
- ``_blind``: blind-index tokens (a keyed hash of an encrypted field's value);
- ``_writes``: index writes as plans (every key declared, refusals turned into errors),
  unique claims;
- ``_query``: query expressions (``Q`` and the predicates) and :class:`Query`, as plans;
- ``_repair``: the expiry sweep, ``verify`` and ``reindex``;
- ``_rotate``: rotating the blind-index key;
- ``_registry``: the model registry (which model owns a prefix, and whether its indexes
  are ready).

``_specs`` and ``_blind`` sit below the models' declaration and the layouts; the others
above the layouts.
"""
