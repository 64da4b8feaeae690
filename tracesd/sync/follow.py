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
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import structlog

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
#: traces whose messages are sent at once
CONCURRENCY = 4


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
        for index, one in enumerate(followed):
            try:
                queued += await self._read_one(one)
            except BaseException:
                # a store failure: what was not read yet is read on the next pass
                rest = {f.trace.id for f in followed[index:]}
                if self._dirty is not None:
                    self._dirty |= rest
                raise
        return queued

    async def _read_one(self, followed: Followed) -> int:
        trace, position = followed.trace, followed.position
        reader = self._readers[trace.agent_id]
        queued = 0
        while True:
            try:
                read = await asyncio.to_thread(reader.read, trace, position)
                record = await self._name(trace.id, trace.agent_id, read)
            except Exception as exc:
                # Foreign input: a session in a shape no reader expects is this session's
                # problem alone; it is retried when it changes.
                reason = f"{type(exc).__name__}: {exc}"[:300]
                log.warning(
                    "follow.unreadable",
                    trace_id=trace.id,
                    agent=trace.agent_id,
                    path=trace.source_path,
                    error=reason,
                )
                await self._store.unreadable(trace.id, reason)
                return queued
            await self._store.record(trace.id, record)
            queued += len(record.queued)
            if record.queued:
                log.debug("follow.read", trace_id=trace.id, queued=len(record.queued))
            position = read.position
            if not read.more:
                return queued

    async def _name(self, trace_id: str, agent_id: str, read: Read) -> ReadRecord:
        """Name the events read; queue those new or changed since they were last queued."""
        groups = None if read.whole else [identity.group(e) for e in read.events]
        named = await self._store.names(trace_id, groups) if read.events else {}
        records: list[tuple[tuple[str, str], Name]] = []
        queued: list[Queued] = []
        oversized = 0
        for event in read.events:
            group = identity.group(event)
            earlier = named.setdefault(group, [])
            result = identity.name(trace_id, event, [n.known for n in earlier])
            if result.verdict == "collapsed":
                continue
            slim = bounded(result.event)
            entry = as_message(agent_id, slim, result.message_id, result.part_id)
            body = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
            digest = hashlib.blake2b(body.encode(), digest_size=16).hexdigest()
            signature = event.signature()
            if result.verdict == "again":
                index = next(i for i, n in enumerate(earlier) if n.known.order == event.order)
                if earlier[index].digest == digest:
                    continue
                name = Name(
                    earlier[index].n,
                    identity.Known(result.event.part_key, signature, event.order),
                    digest,
                )
                earlier[index] = name
            else:
                name = Name(
                    len(earlier),
                    identity.Known(result.event.part_key, signature, event.order),
                    digest,
                )
                earlier.append(name)
            records.append((group, name))
            queued.append(Queued(result.part_id, event.order, body))
            oversized += slim is not result.event
        return ReadRecord(read.position, records, queued, oversized)

    # ------------------------------------------------------------------------- send

    async def send(self) -> Verdict:
        """Send every followed trace's queued messages, CONCURRENCY traces at a time."""
        total = Sent()
        while True:
            waiting = await self._store.waiting()
            if not waiting:
                return total
            verdicts = await asyncio.gather(*(self._send_trace(t) for t in waiting[:CONCURRENCY]))
            for verdict in verdicts:
                if not isinstance(verdict, Sent):
                    return verdict
                total = Sent(total.stored + verdict.stored, total.refused + verdict.refused)
            if not any(isinstance(v, Sent) and (v.stored or v.refused) for v in verdicts):
                return total  # nothing moved (e.g. traces sent again first): next run

    async def _send_trace(self, trace_id: str) -> Verdict | Sent:
        pending = await self._store.claim(trace_id, MAX_MESSAGES)
        done = Sent()
        for chunk in _chunks(pending):
            verdict = await self._send_chunk(trace_id, chunk)
            if not isinstance(verdict, Sent):
                return verdict
            done = Sent(done.stored + verdict.stored, done.refused + verdict.refused)
        return done

    async def _send_chunk(self, trace_id: str, chunk: list[Pending]) -> Verdict | Sent:
        self.requests += 1
        answer = await self._client.send_messages(trace_id, [p.body for p in chunk])
        match answer:
            case Stored():
                await self._store.ack(trace_id, [p.seq for p in chunk])
                return Sent(stored=len(chunk))
            case TraceMissing() if trace_id not in self._resent:
                # The server lost the trace (deleted, or a new server): the trace is sent
                # again first, then its messages. Once only: a server that answers 404 to
                # the messages of a trace it has takes no messages at all (refused below).
                log.warning("follow.trace_missing", trace_id=trace_id)
                self._resent.add(trace_id)
                await self._outbox.resend(trace_id)
                return Sent()
            case TraceMissing():
                message = "HTTP 404: the server takes no messages for this trace"
                log.warning("follow.messages_refused", trace_id=trace_id, error=message)
                await self._store.refuse(trace_id, [(p.seq, message) for p in chunk])
                return Sent(refused=len(chunk))
            case TooLarge() | Refused() if len(chunk) > 1:
                middle = len(chunk) // 2
                first = await self._send_chunk(trace_id, chunk[:middle])
                if not isinstance(first, Sent):
                    return first
                second = await self._send_chunk(trace_id, chunk[middle:])
                if not isinstance(second, Sent):
                    return second
                return Sent(first.stored + second.stored, first.refused + second.refused)
            case TooLarge(message) | Refused(_, message):
                log.warning(
                    "follow.messages_refused",
                    trace_id=trace_id,
                    part_id=chunk[0].part_id,
                    error=message,
                )
                await self._store.refuse(trace_id, [(chunk[0].seq, message)])
                return Sent(refused=1)
            case NotNow() | KeyRefused():
                return answer


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
