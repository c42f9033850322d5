"""Sans-IO WebSocket (RFC 6455): handshake checks, frame-header parser, control frames.

Nothing in this package imports asyncio or sockets.
"""
