"""Sans-IO HTTP/1.1: request/response heads, header rules, body framing, error pages.

Bytes in, events out. Nothing in this package imports asyncio or sockets.
"""
