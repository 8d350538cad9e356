"""The stores: the only code that runs plans against a client.

- ``_sync``: :class:`~redmodel.Store`;
- ``_async``: :class:`~redmodel.AsyncStore` (the same plans, awaited);
- ``_config``: what both share without I/O (client checks, URL and environment
  settings, the store's options).

Both hand each batch to a link of :mod:`redmodel._transport`.
"""
