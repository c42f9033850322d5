"""`wsgate demo`: wsgate in front of a built-in WebSocket chat/echo app.

    app.py       the backend: HTTP routes (page, /api/stats) and the /ws endpoint
    wsconn.py    one server-side WebSocket connection over asyncio streams
    room.py      the chat room: members, broadcast, counters, session events
    conf.py      the generated nginx-syntax config (the classic map idiom)
    run.py       orchestration: backend + wsgate subprocess + shutdown
    live.py      the live view: session lines, access-log lines, counts line
    selftest.py  `wsgate demo --check`: a client that exercises everything through wsgate
    static/      the page (vanilla JS, no external assets)

Only the standard library and wsgate's own sans-IO cores are used, so the demo works
offline with nothing but the package installed.
"""
