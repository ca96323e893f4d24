"""A real S3 API on loopback for the media tests: moto's server mode, and a proxy that can cut it off.

``MotoServer`` runs ``moto_server`` (from PyPI) as a child process on a free 127.0.0.1 port, so its memory
is not the test's (the memory test measures only the sync).  ``CuttingProxy`` forwards a port to it and
records every request line; ``cut_after("PUT", n)`` lets ``n`` PUT requests through, then drops the next one
and refuses every new connection until ``heal()``: a network failure in the middle of a sync, while the
server keeps what it stored.  With ``delay`` it is also a slow network.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import subprocess
import threading
import time

from tools.mariadb_servers import _die_with_parent, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOTO_SERVER = os.path.join(ROOT, ".venv", "bin", "moto_server")

# The credentials the tests put in the environment, where boto3's default chain finds them.  Moto accepts any.
ACCESS_KEY = "AKIAWFUMEDIATESTKEY0"
SECRET_KEY = "wfu-media-secret-" + secrets.token_hex(12)
CREDENTIAL_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}

_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n")


class MotoServer:
    """``moto_server`` on 127.0.0.1:<free port>."""

    def __init__(self):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.process = None

    def start(self, timeout=30):
        log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "moto-%d.log" % self.port), "wb")
        with log:
            self.process = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn
                [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(self.port)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError("moto_server exited with status %s" % self.process.returncode)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not listen on port %d within %d s" % (self.port, timeout))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class CuttingProxy:
    """A TCP proxy to ``upstream_port`` that records request lines and can fail like a broken network."""

    def __init__(self, upstream_port, delay=0.0):
        self.upstream_port = upstream_port
        # Seconds to wait after each chunk of a reply: a slow network.
        self.delay = delay
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.requests = []
        self._lock = threading.Lock()
        self._cut_method = None
        self._left = None
        self._broken = threading.Event()
        self._listener = None
        self._acceptor = None
        self._connections = set()

    # -- control ------------------------------------------------------------------------------------------------------
    def start(self):
        self._broken.clear()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self._acceptor = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        self._acceptor.start()
        return self

    def cut_after(self, method, count):
        """Let ``count`` more ``method`` requests through, then break: drop everything, refuse new connections."""
        with self._lock:
            self._cut_method, self._left = method, count

    def heal(self):
        """Forward again (after a cut), with no cut planned."""
        with self._lock:
            self._cut_method = self._left = None
        self.stop()
        self.start()

    @property
    def broken(self):
        return self._broken.is_set()

    def stop(self):
        self._broken.set()
        if self._acceptor is not None:
            self._acceptor.join()
            self._acceptor = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for sock in connections:
            # shutdown() first: close() alone would not wake a thread blocked in recv(), nor tell the client.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def count(self, method=None, contains=""):
        """How many requests were forwarded (of a method, with ``contains`` in the target)."""
        with self._lock:
            return sum(1 for m, target in self.requests if (method is None or m == method) and contains in target)

    def clear(self):
        with self._lock:
            self.requests.clear()

    # -- forwarding ---------------------------------------------------------------------------------------------------
    def _accept(self, listener):
        with listener:
            while not self._broken.is_set():
                try:
                    client, _address = listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    return
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                except OSError:
                    client.close()
                    continue
                with self._lock:
                    self._connections.update((client, upstream))
                threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
                threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, reader, writer, from_client):
        try:
            while True:
                data = reader.recv(65536)
                if not data:
                    break
                if from_client and not self._let_through(data):
                    self.stop()
                    break
                writer.sendall(data)
                if not from_client and self.delay:
                    time.sleep(self.delay)
        except OSError:
            pass
        finally:
            for sock in (reader, writer):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _let_through(self, data):
        with self._lock:
            for match in _REQUEST_LINE.finditer(data):
                method = match.group(1).decode()
                if method == self._cut_method:
                    if self._left == 0:
                        return False
                    self._left -= 1
                self.requests.append((method, match.group(2).decode("latin-1")))
        return not self._broken.is_set()
