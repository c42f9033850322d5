"""Sans-IO WebSocket (RFC 6455): handshake checks, frame-header parser, control frames.

Nothing in this package imports asyncio or sockets.

    handshake.py   keys, the client's request head, upgrade-request and 101 checks,
                   the Origin allow-list (websocket_allow_origin)
    frames.py      FrameParser: frame boundaries as events with absolute stream offsets;
                   data payloads are counted through, never buffered or unmasked;
                   build_frame / encode_header / apply_mask
    control.py     Close codes and payloads; Close/Ping/Pong builders; masking direction
    messages.py    MessageReader: whole messages for endpoints (probe), not the relay
"""
