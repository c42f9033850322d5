"""Pure (sans-IO) configuration: nginx's language -> directive table -> frozen model.

Nothing in this package imports asyncio or sockets.
"""
