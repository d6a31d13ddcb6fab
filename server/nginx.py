"""The nginx that ``lessoncast run`` puts in front of gunicorn: its generated config and where things live.

gunicorn's gthread workers have a fixed number of threads, and a thread that reads a request from the network
stays busy until the request is complete: a few dozen clients that send their headers one byte at a time take
every thread, and nothing, not even ``/healthz``, is answered. nginx reads requests with one event loop and
timeouts, and hands gunicorn only whole requests over loopback, so a thread is busy only while Python works.

- Ordinary API requests are buffered whole by nginx (bodies up to ``body_limit()``).
- Uploads (``POST /api/v1/lessons`` multipart and the tus endpoint ``/api/v1/uploads``) stream straight through:
  a tus PATCH keeps every byte that arrived before a connection dropped, and a 4 GB file is hashed as it arrives
  instead of being written to nginx's disk first. The tus endpoint asks for a token before it reads a body.
- Media downloads: the Flask view (``server/api/media.py``) checks the name, the token when one is required, and
  ``If-None-Match``, then answers with ``X-Accel-Redirect`` to ``MEDIA_INTERNAL``; nginx sends the file itself
  (sendfile, ``Range``) with the view's headers. The rules stay in the view; nginx only moves the bytes.
  Where media are public (``LESSONCAST_MEDIA_REQUIRE_TOKEN`` off, the default) there is no rule to check for a
  well-formed name of a stored file, so nginx answers it at once, with the view's headers (the same constants);
  a bad name, a missing file, a conditional request and any other type still go to the view. This saves a trip
  through a gunicorn thread per download: with 64 clients on two cores it was the gap to plain nginx
  (BENCHMARKS.md, media over HTTP).
- The rest is proxied to gunicorn on a loopback port, with ``X-Forwarded-For`` and ``X-Forwarded-Proto``, which
  the app trusts only when gunicorn was started behind this nginx (``server.app.create_app(behind_nginx=True)``).
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from server.lessons.media_store import CACHE_FOREVER, MIMETYPES
from server.services import Services
from server.settings import Settings
from server.supervisor import system_executable
from server.validation import CSV_LIMIT

# The internal location media downloads are redirected to; only an X-Accel-Redirect from the app can reach it.
MEDIA_INTERNAL = "/_lessoncast/media/"
# A client must send its whole request header within this time, and some body bytes at least this often.
CLIENT_TIMEOUT_S = 10
# Between two reads of gunicorn's answer: long enough for the biggest report the web workers build.
BACKEND_READ_TIMEOUT_S = 300
# Streaming uploads: the routes whose bodies go to gunicorn as they arrive.
UPLOAD_LOCATIONS = ("= /api/v1/lessons", "^~ /api/v1/uploads")


def body_limit() -> int:
    """The largest body nginx buffers for an ordinary route: the CSV imports' limit plus a multipart envelope."""
    return CSV_LIMIT + 1024 * 1024


def web_dir(services: Services) -> Path:
    """nginx's config, pid file and temporary files: <data>/web."""
    return services.data / "web"


def backend_port(settings: Settings) -> int:
    """The loopback port gunicorn listens on behind nginx: the setting, or the public port plus one."""
    return settings.web_backend_port or settings.port + 1


def backend_bind(settings: Settings) -> str:
    """gunicorn's --bind behind nginx: loopback only, so only this machine can reach it."""
    return f"127.0.0.1:{backend_port(settings)}"


def _path(path: Path, directory: bool = False) -> str:
    """PATH (with a trailing slash for a DIRECTORY) as one quoted nginx parameter, so spaces are fine; nginx would
    read '$' as a variable, so such a path is refused."""
    text = str(path) + ("/" if directory else "")
    if any(c in text for c in '"\\$\n'):
        raise ValueError(f"The data directory {text!r} holds a character nginx cannot take in a path "
                         "(quote, backslash, '$' or newline). Choose another LESSONCAST_DATA_DIR.")
    return f'"{text}"'


def _listen(host: str, port: int) -> str:
    """nginx's listen address; '::' serves IPv4 too, as gunicorn's bind on '::' did (nginx defaults to IPv6 only)."""
    if ":" not in host:
        return f"{host}:{port}"
    address = host.strip("[]")
    return f"[{address}]:{port}" + (" ipv6only=off" if address == "::" else "")


def _json_error(status: int, code: str, message: str) -> str:
    body = '{"error":{"code":"%s","message":"%s"}}' % (code, message.replace('"', "'"))
    return f"default_type application/json;\n            return {status} '{body}';"


def config_text(services: Services) -> str:
    """The whole nginx.conf for this instance (writes nothing)."""
    s = services.settings
    web = web_dir(services)
    upload_limit = s.max_upload_size + 1024 * 1024  # Flask's MAX_CONTENT_LENGTH: the multipart envelope
    if backend_port(s) == s.port:
        raise ValueError(f"LESSONCAST_WEB_BACKEND_PORT is {s.port}, the same as LESSONCAST_PORT, where nginx listens. "
                         "Choose another port for gunicorn, or 0 for the port plus one.")
    backend = f"http://{backend_bind(s)}"
    too_large = (f"The request body is too large: API requests take up to {body_limit() // 2**20} MB, media "
                 f"uploads up to {upload_limit // 2**20} MB (LESSONCAST_MAX_UPLOAD_SIZE). Send large files with the "
                 "resumable upload (/api/v1/uploads).")
    user = ""
    if os.geteuid() == 0:
        # Started as root, nginx's workers would switch to 'nobody', which cannot read the data directory (0700):
        # run them as whoever runs lessoncast, like the other processes. Only root may name a user.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    media = "" if s.media_require_token else _public_media(services, backend)
    uploads = "".join(
        f"""
        location {where} {{
            proxy_request_buffering off;
            client_max_body_size {upload_limit};
            proxy_pass {backend};
        }}
""" for where in UPLOAD_LOCATIONS)
    return f"""# Generated by lessoncast run; edits are overwritten. See docs/OPERATIONS.md ("Web server").
{user}daemon off;
master_process on;
worker_processes auto;
pid {_path(web / 'nginx.pid')};
error_log stderr warn;

events {{
    worker_connections 4096;
}}

http {{
    client_body_temp_path {_path(web / 'client_body')};
    proxy_temp_path {_path(web / 'proxy')};
    fastcgi_temp_path {_path(web / 'fastcgi')};
    uwsgi_temp_path {_path(web / 'uwsgi')};
    scgi_temp_path {_path(web / 'scgi')};

    # gunicorn writes the access log, with the client's address. nginx could only write its own to a file it opens
    # by name, and /dev/stdout cannot be opened when it is the journal's socket or another user's file.
    access_log off;

    default_type application/octet-stream;
    server_tokens off;
    sendfile on;
    tcp_nopush on;

    # Slow clients wait in nginx, never in a gunicorn thread; a client that stalls is dropped.
    client_header_timeout {CLIENT_TIMEOUT_S}s;
    client_body_timeout {CLIENT_TIMEOUT_S}s;
    keepalive_timeout 30s;
    send_timeout 60s;
    reset_timedout_connection on;
    client_max_body_size {body_limit()};

    map $http_host $lc_host {{
        "" $host;
        default $http_host;
    }}
    # Append this hop, as X-Forwarded-For does, for proxies in front (LESSONCAST_TRUSTED_PROXIES).
    map $http_x_forwarded_proto $lc_forwarded_proto {{
        "" $scheme;
        default "$http_x_forwarded_proto, $scheme";
    }}

    server {{
        listen {_listen(s.host, s.port)} backlog=4096;
        server_name _;

        # HTTP/1.1 so a chunked upload body streams through too; one connection per request, no pool to go stale.
        proxy_http_version 1.1;
        proxy_set_header Connection close;
        proxy_set_header Host $lc_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $lc_forwarded_proto;
        proxy_read_timeout {BACKEND_READ_TIMEOUT_S}s;

        location / {{
            proxy_pass {backend};
        }}
{uploads}{media}
        location {MEDIA_INTERNAL} {{
            internal;
            alias {_path(services.media.root, directory=True)};
            # The view's ETag is the file's sha256; nginx's own would be its mtime and size.
            etag off;
            add_header ETag $upstream_http_etag;
        }}

        error_page 413 @too_large;
        location @too_large {{
            {_json_error(413, "too_large", too_large)}
        }}
        error_page 502 504 =503 @web_down;
        location @web_down {{
            {_json_error(503, "web_down", "The web workers are not answering. Look at the log of lessoncast run; "
                         "try again in a minute.")}
        }}
    }}
}}
"""


def _public_media(services: Services, backend: str) -> str:
    """nginx's own answer for public media: /media/<sha256>.<ext> from the store's fan-out directory (ab/<name>)."""
    types = " ".join(f"{mime} {ext};" for ext, mime in MIMETYPES.items())
    extensions = "|".join(MIMETYPES)
    return f"""
        location ~ "^/media/(?<lc_fan>[0-9a-f]{{2}})(?<lc_rest>[0-9a-f]{{62}})\\.(?<lc_ext>{extensions})$" {{
            root {_path(services.media.root)};
            # A conditional request goes to the view (its ETag is the sha256; nginx's would be mtime and size).
            error_page 418 = @media_view;
            recursive_error_pages on;  # so the view's location still maps a missing gunicorn to the JSON 503
            if ($http_if_none_match) {{
                return 418;
            }}
            try_files /$lc_fan/$lc_fan$lc_rest.$lc_ext @media_view;
            etag off;
            if_modified_since off;
            add_header ETag "\\"$lc_fan$lc_rest\\"";
            add_header Cache-Control "{CACHE_FOREVER}";
            types {{ {types} }}
        }}
        location @media_view {{
            proxy_pass {backend};
        }}
"""


def write_config(services: Services) -> Path:
    """Write <data>/web/nginx.conf (and the directory, private to this user); return the config path."""
    web = web_dir(services)
    web.mkdir(mode=0o700, parents=True, exist_ok=True)
    conf = web / "nginx.conf"
    conf.write_text(config_text(services), encoding="utf-8")
    return conf


def nginx_executable(services: Services) -> str | None:
    """The nginx binary to run (the setting's name), found as the supervisor finds every program it starts."""
    return system_executable(services.settings.nginx_bin)


def argv(executable: str, conf: Path) -> list[str]:
    """How to start nginx on CONF in the foreground, with its prefix (relative paths) in <data>/web."""
    return [executable, "-p", f"{conf.parent}/", "-c", str(conf)]
