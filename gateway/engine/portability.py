"""The number-portability table: a CSV of millions of rows streamed into the store while the gateway runs.

`[portability] file` names a CSV (`number,network`, see routing/portability.py). At start, and after each
SIGHUP, the importer compares the file (path, size, modification time) with the fingerprint of the table
in the store (`<store>/portability.json`, written once a table is switched in). When they differ it
replaces the table: the rows go to a new generation chunk by chunk through the store writer, between the
gateway's other commits, with a progress line every `progress_rows`; one switch makes the new generation
the one lookups read; then the old generation is purged in bounded chunks. Lookups read the old table until
the switch, the new one after: a reload never leaves a half table in force. A crash mid-import leaves the
current table as it was; the next import writes above every generation found and purges the partial one
after its switch. An unreadable file, or one where every row is bad, leaves the table in force and is
logged with the first problems and their line numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import trio
import trio.lowlevel

from gateway.config import limits
from gateway.errors import GatewayError
from gateway.routing.portability import PortedChunk, read_ported
from gateway.store.ops import Op, PortedPurge, PortedPurged, PortedRows, PortedSwitch, Result
from gateway.store.store import Store

log = structlog.get_logger(__name__)

Apply = Callable[[Sequence[Op]], Awaitable[list[Result | GatewayError]]]
PURGE_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class PortabilitySettings:
    file: str = ""  # a CSV of number,network; "" for no portability table
    chunk_rows: int = field(default=20_000, metadata=limits(1, 1_000_000))  # rows per store commit
    progress_rows: int = field(default=500_000, metadata=limits(1, None))  # a progress line every so many rows


class PortabilityFileError(GatewayError):
    """The file cannot be read as a portability CSV (not UTF-8): the import stops, the table in force stays."""


def _next(chunks: Iterator[PortedChunk], path: Path, line: int) -> PortedChunk | None:
    """The next chunk; a file that is not UTF-8 (a GBK or Excel export) is refused with where it went wrong."""
    try:
        return next(chunks, None)
    except UnicodeDecodeError as err:
        raise PortabilityFileError(
            f"{path}: not UTF-8 after line {line} ({err.object[err.start : err.start + 4]!r}): save it as UTF-8"
        ) from None


def _fingerprint(path: Path) -> dict[str, object] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class PortabilityImporter:
    def __init__(self, store: Store, apply: Apply) -> None:
        self.store = store
        self._apply = apply
        self._settings = PortabilitySettings()
        self._networks: Collection[str] = ()
        self._check = trio.Event()
        self.active = store.ported_generation() > 0  # whether lookups can find anything
        self.imports = 0

    def configure(self, settings: PortabilitySettings, networks: Collection[str]) -> None:
        """The file and the known networks (at start and after a reload): checked again soon."""
        self._settings = settings
        self._networks = frozenset(networks)
        self._check.set()

    async def run(self) -> None:
        while True:
            await self._check.wait()
            self._check = trio.Event()
            try:
                await self.import_if_changed()
            except (OSError, GatewayError) as err:
                log.error("portability_import_failed", file=self._settings.file, error=str(err),
                          kept="the table in force")  # fmt: skip
            except Exception as err:  # the fault boundary of the import: a bad file never stops the gateway
                log.error("portability_import_failed", file=self._settings.file, error=f"{type(err).__name__}: {err}",
                          kept="the table in force", exc_info=err)  # fmt: skip

    def _marker(self) -> Path:
        return Path(self.store.cfg.path) / "portability.json"

    async def import_if_changed(self) -> bool:
        settings = self._settings
        if not settings.file:
            return False
        path = Path(settings.file)
        found = _fingerprint(path)
        if found is None:
            log.error("portability_file_missing", file=str(path))
            return False
        try:
            stored = json.loads(self._marker().read_text())
        except (OSError, ValueError):
            stored = None
        generation = self.store.ported_generation()
        found["networks"] = sorted(self._networks)  # a network renamed or removed: its rows are read again
        if stored is not None and generation and stored.get("generation") == generation and (
            {k: stored.get(k) for k in found} == found
        ):
            return False
        await self.replace(path, settings)
        return True

    async def replace(self, path: Path, settings: PortabilitySettings) -> None:
        started = time.monotonic()
        generation = self.store.ported_next_generation()
        fingerprint = _fingerprint(path)
        log.info("portability_import_started", file=str(path), generation=generation)
        rows = skipped = 0
        next_report = settings.progress_rows
        problems: list[tuple[int, str]] = []
        line = 0
        with path.open(encoding="utf-8", newline="") as f:
            chunks: Iterator[PortedChunk] = read_ported(f, known_networks=self._networks or None,
                                                        chunk=settings.chunk_rows)  # fmt: skip
            while (chunk := await trio.to_thread.run_sync(_next, chunks, path, line)) is not None:
                line = chunk.line
                skipped += chunk.skipped
                if len(problems) < 20:
                    problems.extend(chunk.problems[: 20 - len(problems)])
                if chunk.rows:
                    self._check_all(await self._apply([PortedRows(generation, chunk.rows)]))
                    rows += len(chunk.rows)
                if rows >= next_report:
                    log.info("portability_import_progress", rows=rows, line=chunk.line, skipped=skipped)
                    next_report += settings.progress_rows
        if not rows:
            log.error("portability_import_empty", file=str(path), skipped=skipped, problems=problems)
            await self._purge(self.store.ported_generation())
            return
        self._check_all(await self._apply([PortedSwitch(generation)]))
        self.active = True
        self.imports += 1
        marker = {**(fingerprint or {}), "networks": sorted(self._networks), "generation": generation}
        self._marker().write_text(json.dumps(marker))
        purged = await self._purge(generation)
        log.info(
            "portability_imported", file=str(path), generation=generation, rows=rows, skipped=skipped,
            purged=purged, seconds=round(time.monotonic() - started, 1), problems=problems or None,
        )  # fmt: skip

    async def _purge(self, keep: int) -> int:
        purged = 0
        while True:
            (result,) = await self._apply([PortedPurge(keep, PURGE_ROWS)])
            if not isinstance(result, PortedPurged):
                raise GatewayError(f"purging old portability rows failed: {result}")
            purged += result.rows
            if not result.more:
                return purged
            await trio.lowlevel.checkpoint()  # let other commits through

    @staticmethod
    def _check_all(results: list[Result | GatewayError]) -> None:
        for r in results:
            if isinstance(r, GatewayError):
                raise r


