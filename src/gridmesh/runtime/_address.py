"""Transport addresses: "host:port" text <-> (host, port)."""

from __future__ import annotations

import ipaddress

from gridmesh.errors import ConfigError

__all__ = ["format_address", "ip_endpoint", "is_loopback", "parse_address"]


def parse_address(
    text: str, *, field: str = "address", source: str = "command line"
) -> tuple[str, int]:
    """Parse "host:port" or "[v6]:port"; raises ``ConfigError`` naming ``field``."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    ascii_port = port_text.isascii() and port_text.isdigit()
    if not sep or not host or not ascii_port or not 0 < int(port_text) < 65536:
        raise ConfigError(source, field, "HOST:PORT with a port in 1..65535", got=text)
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ip_endpoint(address: str) -> tuple[str, int] | None:
    """``address`` as (IP literal, port) for a socket, or None: never a name to resolve.

    Peer addresses come from the network; resolving names there would block the
    event loop on DNS and let a peer aim us anywhere a name points.
    """
    try:
        host, port = parse_address(address)
        return str(ipaddress.ip_address(host)), port
    except (ConfigError, ValueError):
        return None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
