"""Where gatewayctl finds the gateway: the admin socket from `--socket`, $GATEWAY_ADMIN_SOCKET, or the
config's `[server]` table (only that table is read: no secrets, no carriers, no word lists).

The admin socket's file mode (0600) is the credential: whoever can open it acts as the operator, and names
the account an account's command (send, status, events ...) acts for in the hello.
"""

from __future__ import annotations

import os
import re
import sys
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
    try:
        raw = load_toml(path)
    except ConfigError as err:
        if not path.is_file():
            raise
        print(f"gatewayctl: note: {err.problems[0][2]} in {path}; its [server] table read line by line",
              file=sys.stderr)  # fmt: skip
        # A file the gateway would refuse (a typo, a stray byte) must not lock the operator out: `gatewayctl
        # reload` is how they hear every reason. Its [server] table is read line by line instead.
        raw = {"server": _server_lines(path.read_bytes().decode("utf-8", "replace"))}
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


_KEY = re.compile(r'^\s*(admin_socket|socket_path|admin)\s*=\s*(?:"([^"]*)"|(true|false))')


def _server_lines(text: str) -> dict[str, object]:
    """`admin_socket`, `socket_path` and `admin` of the [server] table of a file TOML cannot parse."""
    found: dict[str, object] = {}
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped.split("#", 1)[0].strip() == "[server]"
        elif inside and (m := _KEY.match(line)):
            found[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3) == "true"
    return found
