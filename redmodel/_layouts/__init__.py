"""Layouts: how one object is laid out in Redis, as commands (data), never I/O.

- ``_hash``: one hash per object (the default), and its index writes;
- ``_flat``: one string key per leaf, with a manifest;
- ``_blob``: the whole object through the model's codec into one string;
- ``_pick``: ``layout_of(spec)``, the one place that picks a model's layout.
"""
