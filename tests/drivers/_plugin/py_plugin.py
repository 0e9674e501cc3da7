"""A Docker network plugin written as its docs describe, on Python's http.server: what a
plugin author outside Go writes. It answers only origin-form paths (http.server gives the
request-target as it came, so `POST http://plugin/Plugin.Activate` is a 404 here, as in most
non-Go servers) and logs each request line and headers as JSON lines.

Usage: py_plugin.py LOG (unix SOCKET | tcp PORT [CERT KEY])
"""
import json
import os
import socketserver
import ssl
import sys
from http.server import BaseHTTPRequestHandler

LOG = sys.argv[1]
ANSWERS = {
    "/Plugin.Activate": {"Implements": ["NetworkDriver"]},
    "/NetworkDriver.GetCapabilities": {"Scope": "local", "ConnectivityScope": "local"},
    "/NetworkDriver.CreateNetwork": {},
    "/NetworkDriver.DeleteNetwork": {},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        with open(LOG, "a") as f:
            f.write(json.dumps({"line": self.requestline, "headers": dict(self.headers.items()),
                                "body": body}) + "\n")
        answer = ANSWERS.get(self.path)
        data = json.dumps(answer if answer is not None else {"Err": "no such path"}).encode()
        self.send_response(200 if answer is not None else 404)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

    def address_string(self):
        return "plugin-client"


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


if sys.argv[2] == "unix":
    if os.path.exists(sys.argv[3]):
        os.unlink(sys.argv[3])
    server = UnixServer(sys.argv[3], Handler)
else:
    server = TcpServer(("127.0.0.1", int(sys.argv[3])), Handler)
    if len(sys.argv) > 5:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[4], sys.argv[5])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
