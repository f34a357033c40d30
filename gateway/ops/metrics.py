"""The Prometheus scrape: every figure read from the parts' `statistics()` snapshots at scrape time.

The hot paths count in plain ints, dicts and fixed-bucket histograms (gateway/ops/histogram.py) that they
own; nothing here runs until Prometheus asks. `GatewayCollector.collect()` then reads the engine's parts, each
carrier's binds, the store writer and the store (O(1) reads only: LMDB's entry counts and environment info),
and yields metric families. No prometheus_client metric object lives in a hot path, and each gateway has its
own `CollectorRegistry` (`registry()`), so several gateways in one test process never share a counter.

Names follow Prometheus' conventions: the `gateway_` prefix, `_total` for counters (counted since this process
started), base units (`_seconds`, `_bytes`). docs/metrics.md lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from gateway.carriers.bind import BindStatus
from gateway.carriers.core import BindState
from gateway.ops.health import Readiness, readiness
from gateway.ops.histogram import LATENCY_BOUNDS, HistogramSnapshot

if TYPE_CHECKING:
    from gateway.carriers.pool import CarrierPool
    from gateway.engine.core import Engine, EngineStatistics
    from gateway.store.writer import WriterStatistics

_BIND = ("carrier", "bind")
_STATES = tuple(state.value for state in BindState)
_INF = float("inf")


class GatewayCollector:
    """A prometheus_client collector (`collect()`) over one running gateway's parts."""

    def __init__(
        self, engine: Engine, pools: Mapping[str, CarrierPool], *, stopping: Callable[[], bool],
        smpp: Callable[[], Any] | None = None,
    ) -> None:  # fmt: skip
        self._engine = engine
        self._pools = pools
        self._stopping = stopping
        self._smpp = smpp  # the SMPP server face's statistics(), when it runs

    def readiness(self) -> Readiness:
        """What /ready answers (gateway/ops/health.py)."""
        statuses = {name: pool.status() for name, pool in self._pools.items()}
        return readiness(statuses, self._engine.writer.statistics().accepting, stopping=self._stopping())

    def collect(self) -> Iterable[Metric]:
        engine = self._engine
        stats = engine.statistics()
        statuses = {name: pool.status() for name, pool in self._pools.items()}
        writer = engine.writer.statistics()
        store = engine.store.summary()  # LMDB's own counts and sizes: O(1), one read transaction
        yield from _messages(stats)
        yield from _receipts(stats, store)
        yield from _queues(stats, writer)
        yield from _binds([b for binds in statuses.values() for b in binds])
        yield from _store(writer, store)
        if self._smpp is not None:
            yield from _smpp(self._smpp())
        if engine.shared is not None:
            yield from _cluster(engine.shared.statistics())
        ready = readiness(statuses, writer.accepting, stopping=self._stopping())
        yield GaugeMetricFamily("gateway_ready", "1 when /ready answers 200 (store open, a bind up per carrier)",
                                value=int(ready.ready))  # fmt: skip


def registry(collector: GatewayCollector) -> CollectorRegistry:
    """A registry of this gateway's own (never prometheus_client's global one)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


# --- families ---------------------------------------------------------------------------------------


def _counter(name: str, doc: str, labels: tuple[str, ...] = (), rows: Iterable[tuple[tuple[str, ...], float]] = (),
             value: float | None = None) -> CounterMetricFamily:  # fmt: skip
    family = CounterMetricFamily(name, doc, value=value, labels=labels if value is None else None)
    for key, n in rows:
        family.add_metric(key, n)
    return family


def _gauge(name: str, doc: str, labels: tuple[str, ...] = (), rows: Iterable[tuple[tuple[str, ...], float]] = (),
           value: float | None = None) -> GaugeMetricFamily:  # fmt: skip
    family = GaugeMetricFamily(name, doc, value=value, labels=labels if value is None else None)
    for key, n in rows:
        family.add_metric(key, n)
    return family


def _histogram(family: HistogramMetricFamily, labels: tuple[str, ...], snap: HistogramSnapshot) -> None:
    buckets = [("+Inf" if bound == _INF else repr(float(bound)), float(n)) for bound, n in snap.cumulative()]
    family.add_metric(labels, buckets, snap.sum)


def _messages(s: EngineStatistics) -> Iterator[Metric]:
    b = s.backend
    ended: dict[tuple[str, str], int] = {}
    for source in (s.scheduler.ended, s.correlate.receipt_ends):
        for key, n in source.items():
            ended[key] = ended.get(key, 0) + n
    for reason, n in b.refused.items():  # stored rejected at accept
        ended["rejected", reason] = ended.get(("rejected", reason), 0) + n
    if b.cancelled:
        ended["cancelled", "cancelled"] = ended.get(("cancelled", "cancelled"), 0) + b.cancelled
    if s.faults.internal_errors:
        key = ("failed", "internal_error")
        ended[key] = ended.get(key, 0) + s.faults.internal_errors
    yield _counter("gateway_messages_accepted", "Recipients accepted and stored at submit", value=b.accepted)
    yield _counter(
        "gateway_messages",
        "Messages that reached a final state, by state and reason (receipts count per part; deadline sweeps "
        "count in gateway_messages_overdue_total)",
        ("state", "reason"), ((key, n) for key, n in sorted(ended.items())),
    )  # fmt: skip
    yield _counter("gateway_messages_overdue", "Messages the deadline sweep ended expired (validity, no_receipt, "
                   "unknown_after_timeout)", value=s.scheduler.overdue_ended)  # fmt: skip
    yield _counter("gateway_policy_refusals", "Recipients refused at accept, by reason", ("reason",),
                   (((reason,), n) for reason, n in sorted(b.refused.items())))  # fmt: skip
    yield _counter("gateway_submit_requests", "Submit requests committed", value=b.submits)
    yield _counter("gateway_submit_requests_refused", "Submit requests refused whole: no routed carrier can send "
                   "the text", value=b.text_refused)  # fmt: skip
    yield _counter("gateway_messages_dispatched", "Messages prepared and handed to a carrier's binds",
                   value=s.dispatch.dispatched)  # fmt: skip
    yield _counter("gateway_parts", "submit_sm parts built for a carrier (each part of a long message)",
                   ("carrier",), (((c,), n) for c, n in sorted(s.dispatch.parts.items())))  # fmt: skip
    yield _counter("gateway_messages_handed_back", "Messages taken back from a carrier down too long",
                   value=s.dispatch.handed_back)  # fmt: skip
    yield _counter("gateway_messages_rerouted", "Messages moved to the next carrier of their route",
                   value=s.faults.rerouted)  # fmt: skip
    yield _counter("gateway_internal_errors", "Messages failed with internal_error", value=s.faults.internal_errors)
    yield _gauge("gateway_messages_poisoned", "Messages this process never hands out again", value=s.faults.poisoned)
    c = s.correlate
    yield _counter("gateway_mo", "MO messages stored (a long one once)", value=c.mo)
    yield _counter("gateway_inbound_refused", "deliver_sm / data_sm answered ESME_RX_P_APPN",
                   value=c.inbound_refused)  # fmt: skip
    yield _counter("gateway_carrier_cool_downs", "Times a carrier's error budget sent it into a cool-down",
                   value=c.carrier_cool_downs)  # fmt: skip
    cooling = set(c.cooling)
    yield _gauge("gateway_carrier_cooling", "1 while the carrier's error budget keeps it cooling down", ("carrier",),
                 (((name,), int(name in cooling)) for name in sorted(s.dispatch.carriers)))  # fmt: skip


def _receipts(s: EngineStatistics, store: Mapping[str, int]) -> Iterator[Metric]:
    c = s.correlate
    arrivals = (
        ("matched", c.receipts - c.receipts_early - c.receipts_ignored),
        ("early", c.receipts_early),
        ("ignored", c.receipts_ignored),
        ("unparseable", c.receipts_unparseable),
    )
    yield _counter("gateway_receipts", "Receipts received, by what they met on arrival: their submit (matched), "
                   "none yet (early), a message already final (ignored), or no readable status", ("result",),
                   (((result,), n) for result, n in arrivals))  # fmt: skip
    yield _counter("gateway_receipts_claimed", "Early receipts a submit_sm_resp matched later",
                   value=c.receipts_claimed)  # fmt: skip
    yield _gauge("gateway_receipts_unmatched", "Receipts no submit claimed in time, kept in the unmatched table",
                 value=store["unmatched_receipts"])  # fmt: skip
    yield _gauge("gateway_receipts_waiting", "Early receipts waiting for their submit_sm_resp",
                 value=store["early_receipts"])  # fmt: skip
    yield _gauge("gateway_mo_parts_waiting", "Parts of long MOs waiting for the rest", value=c.mo_parts_waiting)


def _queues(s: EngineStatistics, writer: WriterStatistics) -> Iterator[Metric]:
    carriers = sorted(s.dispatch.carriers)
    yield _gauge("gateway_ready_queue_messages", "Messages in a carrier's ready queue (scheduler to dispatch)",
                 ("carrier",), (((c,), s.scheduler.ready.get(c, 0)) for c in carriers))  # fmt: skip
    yield _gauge("gateway_job_queue_parts", "submit_sm prepared and waiting for a bind of the carrier", ("carrier",),
                 (((c,), s.dispatch.carriers[c].queued_jobs) for c in carriers))  # fmt: skip
    yield _gauge("gateway_scheduler_pending_messages", "Messages handed to dispatch and not yet prepared",
                 value=s.scheduler.pending)  # fmt: skip
    yield _gauge("gateway_parts_waiting_messages", "Long messages whose later parts wait for the part before",
                 value=s.dispatch.parts_waiting)  # fmt: skip
    yield _gauge("gateway_results_queue_items", "Submit outcomes waiting for the correlator",
                 value=s.correlate.results_queued)  # fmt: skip
    yield _gauge("gateway_inbound_queue_items", "Receipts and MO waiting for the correlator",
                 value=s.correlate.inbound_queued)  # fmt: skip
    yield _gauge("gateway_store_queued_ops", "Store operations waiting for their group commit", value=writer.queued)
    yield _gauge("gateway_store_groups_in_flight", "Groups sent to the store writer process and not yet answered",
                 value=writer.in_flight)  # fmt: skip


def _binds(binds: list[BindStatus]) -> Iterator[Metric]:
    def rows(value: Callable[[BindStatus], float]) -> Iterator[tuple[tuple[str, ...], float]]:
        return (((b.carrier, b.bind), value(b)) for b in binds)

    yield _gauge("gateway_bind_up", "1 while the bind holds a bound SMPP session (bound or throttled)", _BIND,
                 rows(lambda b: int(b.state in ("bound", "throttled"))))  # fmt: skip
    state = GaugeMetricFamily("gateway_bind_state", "1 for the bind's current state, 0 for the others",
                              labels=(*_BIND, "state"))  # fmt: skip
    for b in binds:
        for name in _STATES:
            state.add_metric((b.carrier, b.bind, name), int(b.state == name))
    yield state
    yield _gauge("gateway_bind_window_in_use", "submit_sm unanswered on the bind now", _BIND,
                 rows(lambda b: b.window_in_use))  # fmt: skip
    yield _gauge("gateway_bind_window_size", "The bind's window (submit_sm unanswered at most)", _BIND,
                 rows(lambda b: b.window))  # fmt: skip
    yield _gauge("gateway_bind_tps", "submit_sm sent in the last whole second", _BIND, rows(lambda b: b.current_tps))
    yield _gauge("gateway_bind_throttled", "1 during a throttle pause", _BIND, rows(lambda b: int(b.throttled)))
    yield _gauge("gateway_bind_inbound_unacked", "deliver_sm taken and not yet acknowledged", _BIND,
                 rows(lambda b: b.unacked_inbound))  # fmt: skip
    yield _counter("gateway_bind_throttle_pauses", "Throttle pauses (ESME_RTHROTTLED, ESME_RMSGQFUL bursts)", _BIND,
                   rows(lambda b: b.throttles))  # fmt: skip
    yield _counter("gateway_bind_reconnects", "Connections opened after the first", _BIND,
                   rows(lambda b: b.reconnects))  # fmt: skip
    yield _counter("gateway_bind_submits", "submit_sm written", _BIND, rows(lambda b: b.submitted))
    yield _counter("gateway_bind_submits_accepted", "submit_sm answered ESME_ROK", _BIND, rows(lambda b: b.accepted))
    latency = HistogramMetricFamily("gateway_submit_response_seconds", "From a submit_sm's write batch to its "
                                    "submit_sm_resp (any status)", labels=_BIND)  # fmt: skip
    for b in binds:
        if b.latency_counts:
            _histogram(latency, (b.carrier, b.bind), HistogramSnapshot(LATENCY_BOUNDS, b.latency_counts, b.latency_sum))
    yield latency


def _smpp(s: Any) -> Iterator[Metric]:
    """The SMPP server face (gateway/upstream/smpp_server.py SmppServerStatistics)."""
    yield _gauge("gateway_smpp_binds", "Upstream ESMEs bound to the SMPP server face now", value=s.bound)
    yield _counter("gateway_smpp_binds_refused", "Binds refused (credentials, lock-out, limits)",
                   value=s.binds_refused)  # fmt: skip
    yield _counter("gateway_smpp_submits", "Upstream submits (a long message once) handed to acceptance",
                   value=s.submits)  # fmt: skip
    yield _counter("gateway_smpp_refused", "Upstream submits answered with an error status", value=s.refused)
    yield _counter("gateway_smpp_throttled", "Upstream submits answered ESME_RTHROTTLED (TPS, window)",
                   value=s.throttled)  # fmt: skip
    yield _counter("gateway_smpp_receipts_sent", "Receipts sent to ESMEs as deliver_sm", value=s.receipts_sent)
    yield _counter("gateway_smpp_mo_sent", "MO sent to ESMEs as deliver_sm", value=s.mo_sent)
    yield _counter("gateway_smpp_deliver_retries", "deliver_sm sent again (error, no answer, bind gone)",
                   value=s.deliver_retries)  # fmt: skip
    yield _counter("gateway_smpp_deliver_given_up", "Receipts and MO given up after redeliver_attempts failures",
                   value=s.deliver_given_up)  # fmt: skip
    yield _gauge("gateway_smpp_long_pending", "Long messages waiting for their other parts", value=s.long_pending)


def _cluster(s: Any) -> Iterator[Metric]:
    """Several nodes (gateway/cluster/shared.py ClusterStatistics, docs/scaling.md)."""
    yield _gauge("gateway_cluster_reachable", "1 while this node reaches the cluster's Valkey", value=int(s.reachable))
    yield _counter("gateway_cluster_outages", "Times Valkey became unreachable", value=s.outages)
    yield _counter("gateway_cluster_checks", "Recipients checked against the shared lists and caps", value=s.checks)
    yield _counter("gateway_cluster_refused", "Recipients refused by what only the cluster knew", ("reason",),
                   (((r,), n) for r, n in sorted(s.refused.items())))  # fmt: skip
    yield _counter("gateway_cluster_local_only", "Recipients accepted with this node's checks alone (Valkey away)",
                   value=s.local_only)  # fmt: skip
    yield _counter("gateway_cluster_held", "Requests refused for now (hold_classes) while Valkey was away",
                   value=s.held)  # fmt: skip
    yield _counter("gateway_cluster_lists_published", "Opt-out and blacklist changes written to the shared lists",
                   value=s.lists_published)  # fmt: skip
    yield _counter("gateway_cluster_lists_applied", "Other nodes' list changes copied into this store",
                   value=s.lists_applied)  # fmt: skip
    yield _counter("gateway_cluster_map_written", "Receipt map entries written", value=s.map_written)
    yield _counter("gateway_cluster_map_removed", "Receipt map entries removed: their part's final receipt came",
                   value=s.map_removed)  # fmt: skip
    yield _gauge("gateway_cluster_map_waiting", "Receipt map entries waiting for Valkey", value=s.map_waiting)
    yield _counter("gateway_cluster_handed_over", "Receipts handed to the node that sent their part",
                   value=s.handed_over)  # fmt: skip
    yield _counter("gateway_cluster_taken_over", "Receipts other nodes received for this node's parts, applied",
                   value=s.taken_over)  # fmt: skip
    yield _gauge("gateway_cluster_late_waiting", "Receipts no node had mapped yet, looked up again",
                 value=s.late_waiting)  # fmt: skip
    yield _counter("gateway_cluster_offered", "Receipts nobody had mapped, offered to every node",
                   value=s.offered)  # fmt: skip
    yield _counter("gateway_cluster_dropped", "Map entries and late receipts a full backlog pushed out",
                   value=s.dropped)  # fmt: skip
    yield _gauge("gateway_cluster_name_taken", "1 while another running node holds this node's name",
                 value=int(bool(s.name_taken_by)))  # fmt: skip
    yield _counter("gateway_cluster_tps_granted", "Tokens of a carrier's account_tps leased to this node",
                   ("carrier",), (((c,), n) for c, n in sorted(s.tps_granted.items())))  # fmt: skip


def _store(writer: WriterStatistics, store: Mapping[str, int]) -> Iterator[Metric]:
    yield _gauge("gateway_store_open", "1 while the store writer takes operations", value=int(writer.accepting))
    yield _counter("gateway_store_groups", "Group commits", value=writer.groups)
    yield _counter("gateway_store_ops", "Operations committed", value=writer.ops)
    commit = HistogramMetricFamily("gateway_store_commit_seconds", "From a group leaving for its commit to its "
                                   "results (fsync included; in process mode the pipeline too)")  # fmt: skip
    _histogram(commit, (), writer.commit_seconds)
    yield commit
    size = HistogramMetricFamily("gateway_store_group_ops", "Operations per group commit")
    _histogram(size, (), writer.group_ops)
    yield size
    tables = sorted((name, n) for name, n in store.items() if not name.endswith("_bytes"))
    yield _gauge("gateway_store_entries", "Entries in the store's tables (Store.summary: messages, due, final, "
                 "events, opt_outs, ...)", ("table",), (((name,), n) for name, n in tables))  # fmt: skip
    yield _gauge("gateway_store_map_size_bytes", "LMDB map size (grows when map_grow allows)",
                 value=store["map_bytes"])  # fmt: skip
    yield _gauge("gateway_store_used_bytes", "LMDB pages in use up to the last one written",
                 value=store["used_bytes"])  # fmt: skip
