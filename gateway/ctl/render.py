"""gatewayctl's human output: aligned tables with headers (rich), colour only on a terminal. `--json` output
does not come through here (main.py prints the answers' maps as they are)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

# Piped to a file or grep, a table keeps its rows whole (no terminal width to fold them to).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 400)
errors = Console(stderr=True, highlight=False)


def when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at)) if at else "-"


def span(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def table(
    title: str | None, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, show_header: bool = True
) -> Table:
    t = Table(
        title=title, title_justify="left", title_style="bold", header_style="bold", box=None, pad_edge=False,
        show_header=show_header,
    )  # fmt: skip
    for i, header in enumerate(headers):
        # Ids, numbers and times never fold; the last column (an error, a text) may.
        t.add_column(header, overflow="fold", no_wrap=i < len(headers) - 1)
    for row in rows:
        t.add_row(*("-" if cell is None or cell == "" else str(cell) for cell in row))
    return t


def pairs(title: str | None, items: Mapping[str, Any]) -> Table:
    return table(title, ("", ""), items.items(), show_header=False)


def show(*renderables: Any) -> None:
    console.print(Group(*renderables))


def status_view(s: Mapping[str, Any]) -> Group:
    store = s["store"]
    head = pairs(None, {
        "version": s["version"], "pid": s["pid"], "config": s["config"],
        "up": f"{span(s['uptime_seconds'])} (since {when(s['started_at'])})",
        "accounts": ", ".join(s["accounts"]) or "-",
        "store": f"{size(store['used_bytes'])} used of {size(store['map_bytes'])} "
                 f"({100 * store['used_bytes'] / max(store['map_bytes'], 1):.0f}%)",
    })  # fmt: skip
    carriers = table(
        "carriers",
        ("carrier", "binds up", "held", "cooling", "ready queue", "job queue"),
        (
            (name, f"{c['bound']}/{c['binds']}", c["held"], "yes" if c["cooling"] else "no", c["ready_queue"],
             c["job_queue"])
            for name, c in s["carriers"].items()
        ),
    )  # fmt: skip
    waiting = table(
        "messages in the store",
        ("kept", "waiting to send", "parts at a carrier", "with a deadline", "final", "early receipts",
         "unmatched receipts", "opt-outs", "blacklisted"),
        [(store["messages"], store["due"], store["in_flight_parts"], store["awaiting_receipt"], store["final"],
          store["early_receipts"], store["unmatched_receipts"], store["opt_outs"], store["blacklisted"])],
    )  # fmt: skip
    names = list(s["totals"])
    rates = table(
        "throughput (per second)",
        ("over", *names),
        [(label, *(r[n] for n in names)) for label, r in s["throughput"].items()] + [("total", *s["totals"].values())],
    )
    errors_ = pairs("errors", s["errors"])
    refused = s.get("refused_by_reason") or {}
    parts: list[Any] = [head, carriers, waiting, rates, errors_]
    if refused:
        parts.append(pairs("refused at accept, by reason", refused))
    return spaced(parts)


def spaced(parts: Sequence[Any]) -> Group:
    """Sections with a blank line between them."""
    out: list[Any] = []
    for part in parts:
        if out:
            out.append(Text(""))
        out.append(part)
    return Group(*out)


def binds_view(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    return table(
        title,
        ("carrier", "bind", "mode", "state", "for", "window", "tps", "throttled", "reconnects", "held",
         "last error"),
        (
            (b["carrier"], b["bind"], b["mode"], b["state"], span(b["since_seconds"]),
             f"{b['window_in_use']}/{b['window']}", f"{b['current_tps']:.0f}", "yes" if b["throttled"] else "no",
             b["reconnects"], b["held"], b["last_error"])
            for b in rows
        ),
    )  # fmt: skip


def messages_view(rows: Sequence[Mapping[str, Any]]) -> Table:
    return table(
        None,
        ("message id", "created", "account", "to", "class", "state", "reason", "carrier", "parts"),
        ((m["message_id"], when(m["created_at"]), m["account"], m["to"], m["class"], m["state"], m["reason"],
          m["carrier"], m["parts"]) for m in rows),
    )  # fmt: skip


def message_view(m: Mapping[str, Any]) -> Group:
    head = pairs(f"message {m['message_id']}", {
        "account": m["account"], "to": m["to"], "sender": m["sender"], "class": m["class"],
        "state": m["state"] + (f" ({m['reason']})" if m["reason"] else ""),
        "created": when(m["created_at"]), "final": when(m["final_at"]), "expires": when(m["expires_at"]),
        "carrier": m["carrier"], "route": " > ".join(m["route"]) or "-",
        "left": "; ".join(f"{t['carrier']} ({t['reason']})" for t in m["trail"]) or "-",
        "client ref": m["client_ref"], "batch": m["batch_id"], "receipt requested": m["receipt_requested"],
        "possible duplicate": "yes" if m["possible_duplicate"] else "no",
        "caps counted": ", ".join(m["caps"]) or "-", "text": m["text"],
    })  # fmt: skip
    segments = table(
        "parts",
        ("#", "state", "reason", "carrier id", "via", "attempts", "updated", "due", "duplicate?"),
        ((i + 1, s["state"], s["reason"], s["carrier_id"], s["bind"], s["attempts"], when(s["updated_at"]),
          when(s["due_at"]) if s["due_at"] else "-", "yes" if s["possible_duplicate"] else "")
         for i, s in enumerate(m["segments"])),
    )  # fmt: skip
    return spaced([head, segments])
