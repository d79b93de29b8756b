"""HTTP services on the ``[http]`` listener: WebSocket, BOSH, host-meta (docs/web.md)."""
