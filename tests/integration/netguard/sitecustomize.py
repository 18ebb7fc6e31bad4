"""Outbound-network guard for the test server: refuses and records every non-loopback connection attempt.

The ComfyUI test server's interpreter imports this file as `sitecustomize` at start-up (comfy_server.py puts this
folder first on PYTHONPATH and names the record file in SCALEWISE_NET_GUARD_LOG). It wraps socket.socket.connect
and connect_ex, socket.getaddrinfo and gethostbyname(_ex), so create_connection, urllib, asyncio and ssl are
covered too. Loopback hosts and non-IP sockets (Unix, netlink) pass; anything else raises ConnectionRefusedError
(socket.gaierror for name lookups) and appends one JSON line to the record, with the call, host, port, pid and the
Python stack, so tests/integration/test_no_network.py can tell an attempt from the pack's code from one of
ComfyUI's own. Every process that loads it writes one {"event": "installed"} line first. Without
SCALEWISE_NET_GUARD_LOG it does nothing.
"""
import errno
import importlib.util
import json
import os
import socket
import sys
import threading
import time
import traceback

_LOG = os.environ.get("SCALEWISE_NET_GUARD_LOG")
_LOCK = threading.Lock()
_LOCAL_NAMES = {"localhost", "ip6-localhost", "ip6-loopback", "", "0.0.0.0", "::", "::1"}


def _write(entry: dict) -> None:
    entry.update(pid=os.getpid(), time=time.time())
    with _LOCK, open(_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _is_local(host) -> bool:
    if host is None:             # getaddrinfo(None, port): the wildcard address of a bind, not a peer
        return True
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode(errors="replace")
    host = str(host).strip("[]").lower().split("%")[0]
    return host in _LOCAL_NAMES or host.startswith("127.") or host.startswith("::ffff:127.")


def _refuse(call: str, host, port):
    stack = [f"{fr.filename}:{fr.lineno} {fr.name}" for fr in traceback.extract_stack()[:-2]]
    _write({"event": "refused", "call": call, "host": str(host), "port": str(port), "stack": stack[-40:]})


def _install() -> None:
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo, real_byname, real_byname_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex
    ip_families = (socket.AF_INET, socket.AF_INET6)

    def outbound(sock, address) -> bool:
        return sock.family in ip_families and isinstance(address, tuple) and not _is_local(address[0])

    def connect(self, address):
        if outbound(self, address):
            _refuse("socket.connect", address[0], address[1])
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"outbound connection to {address[0]}:{address[1]} "
                                                             "refused by the test network guard")
        return real_connect(self, address)

    def connect_ex(self, address):
        if outbound(self, address):
            _refuse("socket.connect_ex", address[0], address[1])
            return errno.ECONNREFUSED
        return real_connect_ex(self, address)

    def getaddrinfo(host, port, *args, **kwargs):
        if not _is_local(host):
            _refuse("socket.getaddrinfo", host, port)
            raise socket.gaierror(socket.EAI_NONAME, f"name lookup of {host} refused by the test network guard")
        return real_getaddrinfo(host, port, *args, **kwargs)

    def gethostbyname(host):
        if not _is_local(host):
            _refuse("socket.gethostbyname", host, None)
            raise socket.gaierror(socket.EAI_NONAME, f"name lookup of {host} refused by the test network guard")
        return real_byname(host)

    def gethostbyname_ex(host):
        if not _is_local(host):
            _refuse("socket.gethostbyname_ex", host, None)
            raise socket.gaierror(socket.EAI_NONAME, f"name lookup of {host} refused by the test network guard")
        return real_byname_ex(host)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex = getaddrinfo, gethostbyname, gethostbyname_ex
    _write({"event": "installed", "argv": sys.argv[:3]})


def _chain() -> None:
    """Run the sitecustomize this file shadows (e.g. Debian's), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in sys.path:
        path = os.path.join(folder or ".", "sitecustomize.py")
        if os.path.abspath(folder or ".") != here and os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", path)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception:  # never break the interpreter's start-up over someone else's hook
                pass
            return


if _LOG:
    _install()
_chain()
