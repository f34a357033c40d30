"""Where gatewayctl finds the gateway: the admin socket from `--socket`, $GATEWAY_ADMIN_SOCKET, or the
config's `[server]` table (only that table is read: no secrets, no carriers, no word lists).

The admin socket's file mode (0600) is the credential: whoever can open it acts as the operator, and names
the account an account's command (send, status, events ...) acts for in the hello.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import load_toml
from gateway.errors import ConfigError

ENV_SOCKET = "GATEWAY_ADMIN_SOCKET"
ENV_CONFIG = "GATEWAY_CONFIG"


def default_config() -> str:
    """$GATEWAY_CONFIG, else conf/gateway.toml here, else the project's own (gatewayctl run from anywhere)."""
    chosen = os.environ.get(ENV_CONFIG)
    if chosen:
        return chosen
    here = Path("conf/gateway.toml")
    project = Path(__file__).resolve().parents[2] / "conf" / "gateway.toml"
    return str(here if here.exists() or not project.exists() else project)


def admin_socket(socket: str | None, config: str | None) -> str:
    """The admin socket's path; ConfigError when the config cannot say (missing, not TOML, wrong types)."""
    if socket:
        return socket
    chosen = os.environ.get(ENV_SOCKET)
    if chosen:
        return chosen
    path = Path(config or default_config()).resolve()
    raw = load_toml(path)
    server = raw.get("server", {})
    if not isinstance(server, dict):
        raise ConfigError([(str(path), "server", "must be a table")])
    # The project directory: the parent of conf/, else the config's own directory (as the gateway reads it).
    base = next((p.parent for p in path.parents if p.name == "conf"), path.parent)
    if server.get("admin") is False:
        raise ConfigError([(str(path), "server.admin", "the admin socket is turned off in this config")])
    for key in ("admin_socket", "socket_path"):
        if not isinstance(server.get(key, ""), str):
            raise ConfigError([(str(path), f"server.{key}", "must be a string")])
    chosen = server.get("admin_socket") or ""
    if not chosen:
        upstream = Path(server.get("socket_path") or "var/gateway.sock")
        chosen = str(upstream.parent / "admin.sock")
    return chosen if os.path.isabs(chosen) else str(base / chosen)
