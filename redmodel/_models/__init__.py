"""Models: what a declaration becomes, and how its values become Redis strings.

- ``_keys``: key names (escaping ids and field names, SCAN patterns, generated ids);
- ``_types``: field types, scalar encoders and per-type checkers;
- ``_tree``: an instance as a tree of Redis strings (the flat layout's view);
- ``_specs``: the compiled model (:class:`ModelSpec`, :class:`FieldSpec`, ``spec_of``);
- ``_hidden``: encrypted values kept out of reprs and errors, and never left unencrypted;
- ``_schema``: reading a declaration (``model``, ``field``, ``key_field``) into a spec.

The lower modules (keys, types) sit below the codecs; the spec and the declaration above.
"""
