"""The asyncio layer: listeners, downstream connections, upstream relay, tunnels.

It moves bytes and owns timers; all parsing is delegated to the sans-IO cores.
"""
