"""Transport addresses: "host:port" text <-> (host, port)."""

from __future__ import annotations

import ipaddress

from gridmesh.errors import ConfigError

__all__ = ["format_address", "is_loopback", "parse_address"]


def parse_address(
    text: str, *, field: str = "address", source: str = "command line"
) -> tuple[str, int]:
    """Parse "host:port" or "[v6]:port"; raises ``ConfigError`` naming ``field``."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(source, field, "HOST:PORT with a port in 1..65535", got=text)
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
