"""A WSGI app for tests/device_agent/test_fetcher.py, run under gunicorn: the TUF metadata answers a client sees
while it walks the root chain. The 404's body goes out in a second write, a moment after the headers, as a busy
gunicorn worker sends it; a client that returns the connection to its pool without reading that body then reads it
as the status line of its next answer."""

import time

NOT_FOUND = b'{"error":{"code":"not_found","message":"No metadata file 2.root.json."}}'
TIMESTAMP = b'{"signed":{"_type":"timestamp","version":7}}'


def _late(body: bytes):
    yield b""  # gunicorn sends the headers on the first write
    time.sleep(0.01)
    yield body


def app(environ, start_response):
    if environ["PATH_INFO"].endswith("/timestamp.json"):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(TIMESTAMP)))])
        return [TIMESTAMP]
    start_response("404 NOT FOUND", [("Content-Type", "application/json"), ("Content-Length", str(len(NOT_FOUND)))])
    return _late(NOT_FOUND)
