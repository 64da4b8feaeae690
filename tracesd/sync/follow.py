"""Message follow: each synced trace's messages reach the server as its session grows.

Two steps, both run by the sync job after its traces (so a trace is on the server before
its messages):

* read: for each followed trace whose session changed (a capture saw its file change; at
  start, every one), the agent's reader reads what was appended since the recorded
  position (tracesd.messages.readers), each event is named as the real CLI names it
  (messages.identity) and turned into its batch entry, and the new position, names and
  entries are recorded together (store/follow.py). A session that cannot be read is
  recorded as such and retried on its next change; it holds up no other.
* send: each trace's queued entries go to `POST /v1/traces/{id}/messages/batch`, in the
  session's order, at most MAX_MESSAGES and MAX_BYTES per request. The answer decides:
  stored (the entries leave the queue), the trace is missing on the server (it is sent
  again, then its messages), too large or refused (halved until the culprit stands alone;
  it is kept as refused and counted, the rest flows), or "not now" / key refused, which
  ends the run with the same backoff and auth pause as trace sync.

The ids are the CLI's, so a message sent twice (after `kill -9` between the server's answer
and the acknowledgement, or after the CLI uploaded it) changes nothing on the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import structlog

from tracesd.errors import StoreError
from tracesd.messages import identity
from tracesd.messages.event import as_message, bounded
from tracesd.messages.readers import Read, Reader
from tracesd.store.follow import (
    Followed,
    FollowStore,
    MessageCounts,
    Name,
    Pending,
    Queued,
    ReadRecord,
)
from tracesd.store.outbox import Outbox
from tracesd.sync.client import BackendClient
from tracesd.sync.wire import KeyRefused, NotNow, Refused, Stored, TooLarge, TraceMissing

log = structlog.get_logger("tracesd.follow")

#: messages per request (the real CLI's `maxBatchItems`)
MAX_MESSAGES = 1000
#: JSON bytes per request (the CLI aims at 8 MiB by an estimate that ignores escaping;
#: this is a real count, and leaves the server's limit far away)
MAX_BYTES = 4 * 1024 * 1024
#: how long a read in the background waits, so that a burst of changes is read together
READ_DELAY_S = 0.2
#: traces whose messages are sent at once
CONCURRENCY = 8
#: sessions read (and recorded in one transaction) together
READ_BATCH = 64
#: queued JSON one send pass holds in memory at most (a single bigger entry still goes)
PASS_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sent:
    """A send pass ended: how many messages were stored, and refused for good."""

    stored: int = 0
    refused: int = 0


#: how a send pass ended: done, or the server says not now / refuses the key
Verdict = Sent | NotNow | KeyRefused


class Follower:
    def __init__(
        self,
        store: FollowStore,
        outbox: Outbox,
        client: BackendClient,
        readers: Mapping[str, Reader],
        *,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._client = client
        self._readers = dict(readers)
        #: traces to read on the next pass; None: every followed one (at start)
        self._dirty: set[str] | None = None
        #: traces sent again after a 404 to their messages, this run of the daemon
        self._resent: set[str] = set()
        #: requests made, for status
        self.requests = 0
        self._reading = asyncio.Lock()
        self._on_crash = on_crash
        self._background: asyncio.Task[None] | None = None

    @property
    def agents(self) -> Collection[str]:
        return self._readers.keys()

    async def counts(self) -> MessageCounts:
        return await self._store.counts(self.agents)

    def changed(self, trace_ids: Collection[str]) -> None:
        """These traces' sessions changed (or their trace reached the server): read them."""
        if self._dirty is not None:
            self._dirty.update(trace_ids)

    # ------------------------------------------------------------------------- read

    @property
    def has_changes(self) -> bool:
        return self._dirty is None or bool(self._dirty)

    async def read(self) -> int:
        """Read every changed followed session; the number of messages queued. One read
        at a time (a session is never read twice from the same position)."""
        async with self._reading:
            return await self._read_changed()

    def read_later(self) -> None:
        """Read the changed sessions soon, in the background (while sync waits out a
        backoff: the queue and status know every message whatever the server does)."""
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self._read_behind())

    async def _read_behind(self) -> None:
        try:
            await asyncio.sleep(READ_DELAY_S)  # a burst of changes is read together
            while self.has_changes:
                await self.read()
        except StoreError as exc:
            if exc.retryable:  # the traces stay changed: read on the next run
                log.warning("follow.store_busy", error=str(exc))
            else:
                self._crash(exc)
        except Exception as exc:
            self._crash(exc)

    def _crash(self, exc: BaseException) -> None:
        # a bug must stop the daemon so that it is restarted, not end reading quietly
        log.error("follow.crashed", exc_info=exc)
        if self._on_crash is not None:
            self._on_crash(exc)

    async def close(self, grace_s: float) -> None:
        """Give a background read `grace_s` to finish, then cancel it (what it did not
        record is read again at the next start)."""
        task = self._background
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=grace_s)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _read_changed(self) -> int:
        dirty, self._dirty = self._dirty, set()
        if dirty is not None and not dirty:
            return 0
        try:
            followed = await self._store.followed(self.agents, dirty)
        except BaseException:
            self._dirty = None if dirty is None else dirty | (self._dirty or set())
            raise
        queued = 0
        todo = list(followed)
        while todo:
            batch, todo = todo[:READ_BATCH], todo[READ_BATCH:]
            try:
                more, count = await self._read_batch(batch)
            except BaseException:
                # a store failure: what was not recorded is read again on the next pass
                if self._dirty is not None:
                    self._dirty |= {f.trace.id for f in [*batch, *todo]}
                raise
            queued += count
            todo += more
        return queued

    async def _read_batch(self, batch: list[Followed]) -> tuple[list[Followed], int]:
        """One read of each session (one thread hop for all), named against what is known
        (one query), recorded together (one transaction). The sessions with more to read
        right now, at their new positions, and the messages queued."""
        reads = await asyncio.to_thread(self._read_files, batch)
        wanted: dict[str, list[tuple[str, str]] | None] = {}
        for one, read in zip(batch, reads, strict=True):
            if isinstance(read, Read) and read.events:
                groups = None if read.whole else [identity.group(e) for e in read.events]
                wanted[one.trace.id] = groups
        named = await self._store.names(wanted)
        # naming, mapping and scrubbing are CPU work: off the event loop, like the reads
        records, failed, more = await asyncio.to_thread(self._name_all, batch, reads, named)
        await self._store.record(records, failed)
        queued = sum(len(r.queued) for _, r in records)
        if queued:
            log.debug("follow.read", traces=len(records), queued=queued)
        return more, queued

    def _name_all(
        self,
        batch: list[Followed],
        reads: list[Read | Exception],
        named: dict[tuple[str, str, str], list[Name]],
    ) -> tuple[list[tuple[str, ReadRecord]], list[tuple[str, str]], list[Followed]]:
        """Each session's read named and mapped (in a worker thread); the sessions that
        could not be read, with why; those with more to read right now."""
        records: list[tuple[str, ReadRecord]] = []
        failed: list[tuple[str, str]] = []
        more: list[Followed] = []
        for one, read in zip(batch, reads, strict=True):
            trace = one.trace
            try:
                if isinstance(read, Exception):
                    raise read
                records.append((trace.id, self._name(trace.id, trace.agent_id, read, named)))
            except Exception as exc:
                # Foreign input: a session in a shape no reader expects is this session's
                # problem alone; it is read again when it changes.
                reason = f"{type(exc).__name__}: {exc}"[:300]
                log.warning(
                    "follow.unreadable",
                    trace_id=trace.id,
                    agent=trace.agent_id,
                    path=trace.source_path,
                    error=reason,
                )
                failed.append((trace.id, reason))
                continue
            if read.more:
                more.append(Followed(trace, read.position))
        return records, failed, more

    def _read_files(self, batch: list[Followed]) -> list[Read | Exception]:
        """Each session's reader, from its position (in a worker thread)."""
        reads: list[Read | Exception] = []
        for one in batch:
            try:
                reads.append(self._readers[one.trace.agent_id].read(one.trace, one.position))
            except Exception as exc:  # recorded as unreadable by the caller
                reads.append(exc)
        return reads

    def _name(
        self,
        trace_id: str,
        agent_id: str,
        read: Read,
        named: dict[tuple[str, str, str], list[Name]],
    ) -> ReadRecord:
        """Name the events read; queue those new or changed since they were last queued."""
        records: list[tuple[tuple[str, str], Name]] = []
        queued: list[Queued] = []
        oversized = 0
        for event in read.events:
            group = identity.group(event)
            earlier = named.setdefault((trace_id, *group), [])
            result = identity.name(trace_id, event, [n.known for n in earlier])
            if result.verdict == "collapsed":
                continue
            slim = bounded(result.event)
            entry = as_message(agent_id, slim, result.message_id, result.part_id)
            body = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
            digest = hashlib.blake2b(body.encode(), digest_size=16).hexdigest()
            known = identity.Known(result.event.part_key, event.signature(), event.order)
            if result.verdict == "again":
                index = next(i for i, n in enumerate(earlier) if n.known.order == event.order)
                if earlier[index].digest == digest:
                    continue
                name = Name(earlier[index].n, known, digest)
                earlier[index] = name
            else:
                name = Name(len(earlier), known, digest)
                earlier.append(name)
            records.append((group, name))
            queued.append(Queued(result.part_id, event.order, body))
            oversized += slim is not result.event
        return ReadRecord(read.position, records, queued, oversized)

    # ------------------------------------------------------------------------- send

    async def send(self) -> Verdict:
        """Send the queued messages: each pass claims a bounded share of the queue, sends
        each trace's part as one batch (CONCURRENCY traces at once) and records all the
        answers together. Ends when the queue is empty, nothing moved, or the server says
        not now / refuses the key (what was stored before that is recorded first)."""
        total = Sent()
        gate = asyncio.Semaphore(CONCURRENCY)

        async def send_one(trace_id: str, pending: list[Pending]) -> _Outcome:
            async with gate:
                return await self._send_trace(trace_id, pending)

        while True:
            claim = await self._store.claim(MAX_MESSAGES, PASS_BYTES)
            if not claim.pending:
                return total
            outcomes = await asyncio.gather(*(send_one(t, p) for t, p in claim.pending.items()))
            await self._store.settle(
                [(o.trace_id, o.stored) for o in outcomes if o.stored],
                [(o.trace_id, o.refused) for o in outcomes if o.refused],
            )
            for outcome in outcomes:
                if outcome.missing:
                    await self._outbox.resend(outcome.trace_id)
            stored = sum(len(o.stored) for o in outcomes)
            refused = sum(len(o.refused) for o in outcomes)
            total = Sent(total.stored + stored, total.refused + refused)
            stop = next((o.stop for o in outcomes if o.stop is not None), None)
            if stop is not None:
                return stop
            if not stored and not refused:
                return total  # e.g. traces sent again first: their messages go next run
            if claim.complete:
                return total  # what was queued meanwhile goes with the next run

    async def _send_trace(self, trace_id: str, pending: list[Pending]) -> _Outcome:
        outcome = _Outcome(trace_id)
        for chunk in _chunks(pending):
            await self._send_chunk(outcome, chunk)
            if outcome.stop is not None or outcome.missing:
                break
        return outcome

    async def _send_chunk(self, outcome: _Outcome, chunk: list[Pending]) -> None:
        trace_id = outcome.trace_id
        self.requests += 1
        answer = await self._client.send_messages(trace_id, [p.body for p in chunk])
        match answer:
            case Stored():
                outcome.stored += [p.seq for p in chunk]
            case TraceMissing() if trace_id not in self._resent:
                # The server lost the trace (deleted, or a new server): the trace is sent
                # again first, then its messages. Once only: a server that answers 404 to
                # the messages of a trace it has takes no messages at all (refused below).
                log.warning("follow.trace_missing", trace_id=trace_id)
                self._resent.add(trace_id)
                outcome.missing = True
            case TraceMissing():
                message = "HTTP 404: the server takes no messages for this trace"
                log.warning("follow.messages_refused", trace_id=trace_id, error=message)
                outcome.refused += [(p.seq, message) for p in chunk]
            case TooLarge() | Refused() if len(chunk) > 1:
                middle = len(chunk) // 2
                await self._send_chunk(outcome, chunk[:middle])
                if outcome.stop is None and not outcome.missing:
                    await self._send_chunk(outcome, chunk[middle:])
            case TooLarge(message) | Refused(_, message):
                log.warning(
                    "follow.messages_refused",
                    trace_id=trace_id,
                    part_id=chunk[0].part_id,
                    error=message,
                )
                outcome.refused.append((chunk[0].seq, message))
            case NotNow() | KeyRefused():
                outcome.stop = answer


@dataclass(slots=True)
class _Outcome:
    """What sending one trace's claimed messages came to."""

    trace_id: str
    stored: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    #: the server does not have the trace: it is sent again first
    missing: bool = False
    #: the server said not now, or refused the key: the run ends
    stop: NotNow | KeyRefused | None = None


def _chunks(pending: list[Pending]) -> list[list[Pending]]:
    """Requests of at most MAX_MESSAGES entries and MAX_BYTES of JSON."""
    chunks: list[list[Pending]] = []
    size = 0
    for item in pending:
        cost = len(item.body.encode()) + 1
        if chunks and len(chunks[-1]) < MAX_MESSAGES and size + cost <= MAX_BYTES:
            chunks[-1].append(item)
            size += cost
        else:
            chunks.append([item])
            size = cost
    return chunks
