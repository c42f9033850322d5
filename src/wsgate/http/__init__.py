"""Sans-IO HTTP/1.1: request/response heads, header rules, body framing, error pages.

Bytes in, events out. Nothing in this package imports asyncio or sockets.

    events    Request, Response, Data, EndOfMessage, ConnectionClosed, NEED_DATA
    parse     RequestHeadParser (nginx 1.22's request-head rules and limits)
    response  ResponseHeadParser (upstream heads), response_body_kind
    uri       target splitting, Host validation, $uri normalisation
    framing   ContentLengthReader, ChunkedReader, CloseDelimitedReader, ChunkedWriter
    headers   build_upstream_request, build_client_response_head, hop-by-hop rules
    pages     nginx's status lines and error pages, error_response
"""

from wsgate.http.events import (NEED_DATA, ConnectionClosed, Data, EndOfMessage, Request,
                                Response)
from wsgate.http.parse import BadRequest, RequestHeadParser
from wsgate.http.response import ResponseHeadParser, UpstreamHeadError

__all__ = ["NEED_DATA", "ConnectionClosed", "Data", "EndOfMessage", "Request", "Response",
           "BadRequest", "RequestHeadParser", "ResponseHeadParser", "UpstreamHeadError"]
