"""A shell in an instance from the console (`s`): the terminal is handed to it, in raw mode, until it ends.

It goes through the control API's exec WebSocket with the console's token, like `ssh acme@HOST shell web`.
"""

import contextlib
import json
import os
import select
import shutil
import sys
import termios
import threading
import tty

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect, unix_connect

from tenants.client import ExecTarget

SHELL = ["/bin/sh"]


def open_socket(target: ExecTarget) -> ClientConnection:
    if target.socket is not None:
        return unix_connect(str(target.socket), target.url, additional_headers=target.headers, max_size=None)
    return connect(target.url, additional_headers=target.headers, max_size=None)


def run_shell(target: ExecTarget) -> tuple[int, str]:
    """Relay this terminal to the command until it exits; returns its exit code, and why the API closed the
    socket if it did so before (the command could not start: its node's engine not reached, say), else ""."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin)
    exit_code, reason = 255, ""
    with open_socket(target) as ws:
        columns, lines = shutil.get_terminal_size()
        with contextlib.suppress(ConnectionClosed):  # closed at once: said by `output`
            ws.send(json.dumps({"resize": [columns, lines]}))
        done = threading.Event()

        def output() -> None:
            nonlocal exit_code, reason
            try:
                for message in ws:
                    if isinstance(message, str):
                        exit_code = int(json.loads(message).get("exit", 255))
                        break
                    os.write(stdout, message[1:])
            except ConnectionClosed as closed:
                reason = closed.rcvd.reason if closed.rcvd is not None else ""
            done.set()

        reader = threading.Thread(target=output, daemon=True)
        reader.start()
        tty.setraw(stdin)
        try:
            while not done.is_set():
                ready, _, _ = select.select([stdin], [], [], 0.1)
                if ready:
                    ws.send(os.read(stdin, 4096))
        finally:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        reader.join(timeout=2)
    return exit_code, reason
