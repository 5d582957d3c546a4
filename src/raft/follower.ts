import {
  appendFromLeader, commitTo, firstIndexOfTerm, lastIndex, matchTerm, restoreFromSnapshot, termAt,
} from './log.ts';
import type { AppendRequest, SnapshotChunk } from './messages.ts';
import { refreshConf, send, type RaftState } from './state.ts';

/** A message from the current leader: remember it and reset the election timer. */
export function heardFromLeader(s: RaftState, from: string): void {
  s.leader = from;
  s.leaderContactAt = s.now;
  s.out.resetElectionTimer = true;
}

export function handleAppend(s: RaftState, m: AppendRequest): void {
  let prev = m.prevLogIndex;
  let prevTerm = m.prevLogTerm;
  let entries = m.entries;
  const reply = (success: boolean, matchIndex: number, conflictIndex = 0, conflictTerm = 0) =>
    send(s, { type: 'appendResp', from: s.id, to: m.from, term: s.term, success, matchIndex, conflictIndex, conflictTerm, round: m.round });

  // Our committed prefix matches every later leader's log: skip what it covers.
  if (prev < s.log.committed) {
    entries = entries.filter((e) => e.index > s.log.committed);
    prev = s.log.committed;
    prevTerm = termAt(s.log, prev)!;
    if (entries.length && entries[0]!.index !== prev + 1) return reply(true, prev);
  }
  if (matchTerm(s.log, prev, prevTerm)) {
    const lastNew = appendFromLeader(s.log, prev, entries);
    if (entries.length) refreshConf(s, entries);
    commitTo(s.log, Math.min(m.commit, lastNew));
    return reply(true, lastNew);
  }
  // Fast back-off hints (thesis §5.3 optimization): the conflicting term and where it starts.
  if (prev > lastIndex(s.log)) return reply(false, m.prevLogIndex, lastIndex(s.log) + 1, 0);
  const t = termAt(s.log, prev)!;
  reply(false, m.prevLogIndex, firstIndexOfTerm(s.log, prev, t), t);
}

export function handleSnapshotChunk(s: RaftState, m: SnapshotChunk): void {
  const { meta } = m;
  const reply = (nextOffset: number, installed: boolean, rejected: boolean) =>
    send(s, { type: 'snapshotResp', from: s.id, to: m.from, term: s.term, snapshotIndex: meta.index, nextOffset, installed, rejected });

  if (meta.index <= s.log.committed) {
    s.incoming = null;
    return reply(m.totalBytes, true, false);
  }
  let inc = s.incoming;
  if (!inc || inc.index !== meta.index || inc.term !== meta.term) {
    if (m.offset !== 0) return reply(0, false, true);
    inc = s.incoming = { index: meta.index, term: meta.term, offset: 0, chunks: [] };
  }
  if (m.offset !== inc.offset) return reply(inc.offset, false, true);
  inc.chunks.push(m.data);
  inc.offset += m.data.length;
  if (!m.done) return reply(inc.offset, false, false);

  s.incoming = null;
  if (matchTerm(s.log, meta.index, meta.term)) {
    // Our log already holds the snapshot's last entry: keep the log, just learn the commit.
    commitTo(s.log, meta.index);
    return reply(inc.offset, true, false);
  }
  // The chunks as received: joining hundreds of MB into one buffer would stall the event loop.
  const snapshot = { meta, data: inc.chunks };
  restoreFromSnapshot(s.log, meta.index, meta.term);
  s.snapshot = snapshot;
  s.confIndex = 0;
  s.confTerm = 0;
  s.conf = meta.conf;
  s.out.snapshotToInstall = snapshot;
  reply(inc.offset, true, false);
}
