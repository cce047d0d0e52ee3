"""A real HTTP backend for the gateway tests, on loopback: it reports what it received, streams bodies,
answers slowly on request, and echoes a WebSocket."""

import base64
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "backend"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _hash_body(self) -> tuple[str, int]:
        """Read the request body piece by piece (never whole): its SHA-256 and length."""
        digest, total = hashlib.sha256(), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().strip(), 16):
                digest.update(self.rfile.read(size))
                total += size
                self.rfile.readline()
            self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                piece = self.rfile.read(min(left, 65536))
                digest.update(piece)
                total, left = total + len(piece), left - len(piece)
        return digest.hexdigest(), total

    def do_GET(self) -> None:  # noqa: N802
        path = self.path
        if path.startswith("/slow"):
            time.sleep(float(path.split("=")[1]))
        if path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"alpha-", b"beta-", b"gamma"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        if path.startswith("/unsized"):  # an answer whose end is the connection's
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end\n")
            self.close_connection = True
            return
        if path.startswith("/bytes="):
            size = int(path.split("=")[1])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"x" * 65536
            while size > 0:
                self.wfile.write(block[: min(size, len(block))])
                size -= len(block)
            return
        if path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            accept = base64.b64encode(hashlib.sha1(self.headers["Sec-WebSocket-Key"].encode() + WS_GUID).digest())
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept.decode())
            self.end_headers()
            self.wfile.flush()
            echo_websocket(self.connection)
            self.close_connection = True
            return
        report = {"name": self.name, "path": path, "headers": [[k, v] for k, v in self.headers.items()]}
        self._send(200, json.dumps(report).encode(), {"Content-Type": "application/json", "Set-Cookie": "s=1"})

    do_HEAD = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        digest, length = self._hash_body()
        self._send(200, f"{digest} {length}".encode())

    do_PUT = do_POST  # noqa: N815


def echo_websocket(sock: socket.socket) -> None:
    """Echo unmasked text frames of what masked client frames carry, until a close frame."""
    while True:
        head = sock.recv(2)
        if len(head) < 2 or head[0] & 0x0F == 0x8:
            return
        length = head[1] & 0x7F
        mask = sock.recv(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(sock.recv(length)))
        sock.sendall(bytes([0x81, len(payload)]) + payload)


class QuietServer(ThreadingHTTPServer):
    """The front door's health checks connect and close: no traceback for each."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def start_backend(name: str) -> tuple[ThreadingHTTPServer, str]:
    handler = type(f"Handler_{name}", (Handler,), {"name": name})
    server = QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"
