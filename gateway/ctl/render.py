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
    cluster = s.get("cluster")
    if cluster:  # several nodes (docs/scaling.md)
        down = cluster["unreachable_since_ms"]
        parts.append(pairs(f"cluster (node {cluster['node']})", {
            "valkey": "reachable" if cluster["reachable"] else f"UNREACHABLE since {when(down / 1000)}",
            **({"name": f"TAKEN by another running node: {taken}"} if (taken := cluster.get("name_taken_by")) else {}),
            "outages": cluster["outages"],
            "checked / refused / local only": f"{cluster['checks']} / {sum(cluster['refused'].values())} / "
                                              f"{cluster['local_only']}",
            "held (retry later)": cluster["held"],
            "lists published / applied": f"{cluster['lists_published']} / {cluster['lists_applied']}",
            "receipt map written / waiting": f"{cluster['map_written']} / {cluster['map_waiting']}",
            "receipts handed over / taken over / late": f"{cluster['handed_over']} / {cluster['taken_over']} / "
                                                        f"{cluster['late_waiting']}",
        }))  # fmt: skip
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


def titled(title: str, body: Table) -> Group:
    """A table under a bold title of its own line (a table's own title folds to the table's width)."""
    return Group(Text(title, style="bold"), body)


def batches_view(rows: Sequence[Mapping[str, Any]]) -> Table:
    """An account's batches, a row each: `waiting` is accepted and not ended (in_progress); `state` that of
    a batch made with `batch send` (admin `batch create`), blank for a submit's batch_id."""
    return table(
        None,
        ("batch", "state", "targeted", "valid", "refused", "submitted", "delivered", "failed", "waiting",
         "parts billed", "charged"),
        ((b["batch_id"], (b.get("batch") or {}).get("state", ""), b["targeted"], b["valid"], b["refused"],
          b["submitted"], b["delivered"], b["failed"], b["in_progress"], b["parts_billed"], b["parts_charged"])
         for b in rows),
    )  # fmt: skip


def batch_view(r: Mapping[str, Any]) -> Group:
    """A batch's report: its counters, its definition when it has one (made with `batch send`), then refusals
    by reason, failures by category and the carriers' raw reasons behind those categories (the sections with
    nothing in them left out)."""
    head = titled(f"batch {r['batch_id']} of {r['account']}", pairs(None, {
        "targeted": r["targeted"], "valid": r["valid"], "refused at accept": r["refused"],
        "submitted": r["submitted"], "delivered": r["delivered"], "failed": r["failed"],
        "waiting for a receipt": r["waiting_receipt"], "in progress": r["in_progress"],
        "parts billed (carriers took)": r["parts_billed"], "parts charged (delivered)": r["parts_charged"],
    }))  # fmt: skip
    parts: list[Any] = [head]
    if r.get("batch"):  # made with `batch send` (admin `batch create`): when it runs
        parts.append(titled("the batch: when it runs", batch_definition_view(r["batch"])))
    if r["refused_by_reason"]:
        parts.append(titled("refused at accept, by reason", pairs(None, r["refused_by_reason"])))
    if r["failed_by_category"]:
        parts.append(titled("failed, by category", pairs(None, r["failed_by_category"])))
    if r["failed_by_reason"]:
        parts.append(titled("failure reasons as the carriers gave them", table(
            None,
            ("carrier", "reason", "category", "count"),
            ((f["carrier"], f["reason"], f["category"], f["count"]) for f in r["failed_by_reason"]),
        )))  # fmt: skip
    return spaced(parts)


def batch_definition_view(b: Mapping[str, Any]) -> Table:
    """A batch made with `batch send`: its state, what it sends and when (times in UTC, the zone it keeps
    its time of day in named beside)."""
    every = b["every"]
    if every != "once":
        every += f" at {when(b['at'])} ({b['time_zone']})" + (f" until {when(b['until'])}" if b["until"] else "")
    return pairs(None, {
        "state": b["state"] + (f" ({b['reason']})" if b["reason"] else ""),
        "sends": f"template {b['template']}" if b["template"] else b["text"],
        "class": b["class"], "sender": b["sender"], "every": every, "next run": when(b["next_run_at"]),
        "runs": b["runs"], "recipients": b["recipients"],
    })  # fmt: skip


def recipients_view(rows: Sequence[Mapping[str, Any]]) -> Table:
    """A page of a batch's recipients (the reason last: it may fold)."""
    return table(
        None,
        ("message id", "to", "state", "status", "category", "carrier", "parts", "created", "final", "reason"),
        ((m["message_id"], m["to"], m["state"], m["status"], m["category"], m["carrier"], m["parts"],
          when(m["created_at"]), when(m["final_at"]), m["reason"]) for m in rows),
    )  # fmt: skip


def balance_view(b: Mapping[str, Any]) -> Group:
    """An account's balance of parts, and its statement when the answer has one."""
    limited = b["limited"]
    head = titled(f"balance of {b['account']}", pairs(None, {
        "available": b["available"] if limited else "unlimited (no balance)",
        "reserved": b["reserved"], "charged": b["charged"],
    }))  # fmt: skip
    parts: list[Any] = [head]
    if "statement" in b:
        parts.append(titled("statement (a row a second of what moved)", table(
            None,
            ("at", "reserved", "charged", "released", "topped up", "note"),
            ((when(e["at"]), e["reserved"], e["charged"], e["released"], e["topped_up"], e["note"])
             for e in b["statement"]),
        )))  # fmt: skip
    return spaced(parts)


def _state(t: Mapping[str, Any]) -> str:
    return str(t["state"]) + (" (official)" if t["official"] else "")


def templates_view(rows: Sequence[Mapping[str, Any]]) -> Table:
    """An account's templates, a row each; the text cut to a line (`template show` has it whole)."""
    return table(
        None,
        ("template", "state", "class", "variables", "text"),
        ((t["template_id"], _state(t), t["class"], ", ".join(t["variables"]), clip(t["text"], 60)) for t in rows),
    )


def template_view(t: Mapping[str, Any]) -> Group:
    return titled(f"template {t['template_id']} of {t['account']}", pairs(None, {
        "state": _state(t), "reason": t["reason"], "class": t["class"],
        "variables": ", ".join(t["variables"]), "created": when(t["created_at"]), "updated": when(t["updated_at"]),
        "text": t["text"],
    }))  # fmt: skip


def clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"
