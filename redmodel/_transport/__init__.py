"""The transport: how a batch reaches the socket and what its replies mean.

- ``_wire``: the decisions, without I/O (rounds, MULTI/EXEC, script loading, resends,
  error replies as :class:`~redmodel.ServerError`, :class:`~redmodel.ResendPolicy`);
- ``_links``: the sync and asyncio shells that move the bytes (a connection from the
  client's own pool);
- ``_blocking``: blocking pops on connections that neither cut them short nor resend.
"""
