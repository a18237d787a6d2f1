"""Reaches for the network: a server on the host's loopback (port from the test), DNS, the internet."""

import json
import socket

from _params import load

params = load()
results = {}
if "port" in params:
    try:
        with socket.create_connection(("127.0.0.1", params["port"]), timeout=2) as conn:
            conn.sendall(params["token"].encode())
        results["host_loopback"] = "sent"
    except OSError as exc:
        results["host_loopback"] = str(exc)
try:
    socket.getaddrinfo("pypi.org", 443)
    results["dns"] = "resolved"
except OSError as exc:
    results["dns"] = str(exc)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1).close()
    results["internet"] = "connected"
except OSError as exc:
    results["internet"] = str(exc)
print(json.dumps(results))
