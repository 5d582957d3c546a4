import { applyChange, encodeConfEntry, isVoter } from './conf.ts';
import {
  appendEntries, commitTo, lastIndex, lastIndexWithTermAtMost, slice, stableLastIndex, termAt,
} from './log.ts';
import type { AppendResponse, SnapshotResponse } from './messages.ts';
import { snapshotBytes, snapshotSlice } from './snapshot-data.ts';
import { becomeProbe, becomeReplicate, becomeSnapshot, isPaused, maybeUpdate, sentEntries, type Progress } from './progress.ts';
import { majority, quorumIndex } from './quorum.ts';
import { refreshConf, send, type ProposalError, type RaftState } from './state.ts';
import { EntryType, type ConfChange, type Entry } from './types.ts';

export type Proposal = { id: number; data: Uint8Array } | { id: number; change: ConfChange };

export function appendLocal(s: RaftState, entries: Entry[]): void {
  appendEntries(s.log, entries);
  if (entries.some((e) => e.type === EntryType.ConfChange)) refreshConf(s, entries);
  s.needBroadcast = true;
}

function checkConfChange(s: RaftState, change: ConfChange): ProposalError | Uint8Array {
  const bad = (message: string): ProposalError => ({ code: 'badConfChange', message });
  if (s.log.committed < s.termStartIndex) return bad('leader has not committed an entry of its term yet');
  if (s.confIndex > s.log.committed) return bad('another membership change is in progress');
  const conf = applyChange(s.conf, change);
  if (typeof conf === 'string') return bad(conf);
  if (change.op === 'promote') {
    const pr = s.progress.get(change.node);
    if (!pr || pr.match + s.cfg.promoteLagEntries < lastIndex(s.log)) return bad(`learner ${change.node} has not caught up`);
  }
  return encodeConfEntry({ change, conf });
}

export function propose(s: RaftState, proposals: Proposal[]): void {
  const entries: Entry[] = [];
  for (const p of proposals) {
    if (s.leadTransferee !== null) {
      s.out.proposals.push({ id: p.id, error: { code: 'transferring', leader: s.leadTransferee } });
      continue;
    }
    let type: Entry['type'] = EntryType.Command;
    let data: Uint8Array;
    if ('change' in p) {
      // Validate against the log including this batch's earlier entries.
      if (entries.length) appendLocal(s, entries.splice(0));
      const r = checkConfChange(s, p.change);
      if (!(r instanceof Uint8Array)) {
        s.out.proposals.push({ id: p.id, error: r });
        continue;
      }
      type = EntryType.ConfChange;
      data = r;
    } else {
      data = p.data;
    }
    const index = lastIndex(s.log) + entries.length + 1;
    entries.push({ index, term: s.term, type, data });
    s.out.proposals.push({ id: p.id, index, term: s.term });
    if (type === EntryType.ConfChange) appendLocal(s, entries.splice(0));
  }
  if (entries.length) appendLocal(s, entries);
}

/** Send what the follower is missing (or a snapshot chunk), unless its pipeline is full. */
export function sendAppend(s: RaftState, pr: Progress, allowEmpty: boolean): void {
  if (pr.state === 'snapshot' || isPaused(pr, s.cfg.maxInflight)) return;
  const prev = pr.next - 1;
  const prevTerm = termAt(s.log, prev);
  if (prevTerm === undefined) return startSnapshot(s, pr);
  const entries = pr.next <= lastIndex(s.log) ? slice(s.log, pr.next, lastIndex(s.log), s.cfg.maxEntriesPerMsg, s.cfg.maxBytesPerMsg) : [];
  if (!entries.length && !allowEmpty) return;
  send(s, {
    type: 'append', from: s.id, to: pr.id, term: s.term, prevLogIndex: prev, prevLogTerm: prevTerm,
    entries, commit: s.log.committed, round: s.round,
  });
  // What the follower learns from it: the commit index, capped by the last entry it will then hold.
  pr.commitSent = Math.max(pr.commitSent, Math.min(s.log.committed, prev + entries.length));
  sentEntries(pr, prev + entries.length, entries.length);
}

function startSnapshot(s: RaftState, pr: Progress): void {
  if (!s.snapshot) return;
  becomeSnapshot(pr, s.snapshot.meta.index);
  sendChunk(s, pr);
}

function sendChunk(s: RaftState, pr: Progress): void {
  const snap = s.snapshot!;
  if (pr.snapshotIndex !== snap.meta.index) becomeSnapshot(pr, snap.meta.index);
  const off = pr.snapshotOffset;
  const total = snapshotBytes(snap.data);
  const data = snapshotSlice(snap.data, off, s.cfg.snapshotChunkBytes);
  send(s, {
    type: 'snapshot', from: s.id, to: pr.id, term: s.term, meta: snap.meta, offset: off, data,
    done: off + data.length >= total, totalBytes: total,
  });
  pr.stalledTicks = 0;
}

/** Heartbeat: prove leadership (a new ReadIndex round), carry commit, retransmit after loss. */
export function broadcastHeartbeat(s: RaftState): void {
  s.round += 1;
  s.readRoundPending = false;
  if (s.leadTransferee !== null && s.now >= s.transferDeadline) s.leadTransferee = null;
  for (const pr of s.progress.values()) {
    // The transport may lose messages: if a follower made no progress for two heartbeats, resend.
    const behind = pr.match < lastIndex(s.log);
    pr.stalledTicks = behind ? pr.stalledTicks + 1 : 0;
    if (pr.state === 'snapshot') {
      if (pr.stalledTicks >= 2) sendChunk(s, pr);
    } else if (pr.stalledTicks >= 2 && (pr.state === 'replicate' || pr.probeSent)) {
      becomeProbe(pr);
      pr.stalledTicks = 0;
    }
    sendEmptyAppend(s, pr);
    // A probe at next - 1 even with nothing new to send: a follower whose progress starts
    // optimistic (a new learner: next = last + 1, match 0) would otherwise never be asked, and an
    // idle cluster would never bring it up to date.
    if (pr.state === 'probe') sendAppend(s, pr, pr.match < pr.next - 1);
  }
}

/** An append with no entries anchored at the known match: proves leadership, carries commit. */
function sendEmptyAppend(s: RaftState, pr: Progress): void {
  const prev = termAt(s.log, pr.match) === undefined ? 0 : pr.match;
  const commit = Math.min(s.log.committed, prev);
  send(s, {
    type: 'append', from: s.id, to: pr.id, term: s.term, prevLogIndex: prev, prevLogTerm: termAt(s.log, prev) ?? 0,
    entries: [], commit, round: s.round,
  });
  pr.commitSent = Math.max(pr.commitSent, commit);
}

/** What a commit-only append could tell this follower now: its match, capped by the commit index. */
const commitToTell = (s: RaftState, pr: Progress): number => Math.min(s.log.committed, pr.match);

export function maybeCommit(s: RaftState): void {
  const q = quorumIndex(s.conf.voters, (id) => (id === s.id ? stableLastIndex(s.log) : s.progress.get(id)?.match ?? 0));
  if (q <= s.log.committed) return;
  // Figure 8: only entries of the current term are committed by counting replicas.
  if (termAt(s.log, q) !== s.term && !s.cfg.unsafe?.commitPreviousTermByCounting) return;
  commitTo(s.log, q);
  s.commitBroadcast = true;
  if (s.log.committed >= s.termStartIndex && s.readsAwaitingCommit.length) {
    const ids = s.readsAwaitingCommit;
    s.readsAwaitingCommit = [];
    for (const id of ids) registerRead(s, id);
  }
}

export function handleAppendResponse(s: RaftState, m: AppendResponse): void {
  const pr = s.progress.get(m.from);
  if (!pr) return;
  pr.recentActive = true;
  if (m.round > pr.ackedRound) {
    pr.ackedRound = m.round;
    confirmReads(s);
  }
  if (m.success) {
    if (maybeUpdate(pr, m.matchIndex)) {
      pr.stalledTicks = 0;
      if (pr.state === 'probe') becomeReplicate(pr);
      maybeCommit(s);
      if (s.leadTransferee === m.from && pr.match === lastIndex(s.log)) sendTimeoutNow(s, m.from);
    } else if (pr.state === 'probe') {
      pr.probeSent = false;
    }
    sendAppend(s, pr, false);
    return;
  }
  const rejected = m.matchIndex;
  if (pr.state === 'snapshot' || rejected <= pr.match || (pr.state === 'probe' && rejected !== pr.next - 1)) {
    if (pr.state === 'probe' && rejected !== pr.next - 1) {
      pr.probeSent = false;
      sendAppend(s, pr, false);
    }
    return; // stale answer
  }
  let next = m.conflictIndex;
  if (m.conflictTerm > 0) {
    const found = lastIndexWithTermAtMost(s.log, rejected, m.conflictTerm);
    if (found.term === m.conflictTerm) next = found.index + 1;
  }
  becomeProbe(pr);
  pr.next = Math.max(pr.match + 1, Math.min(next, rejected));
  sendAppend(s, pr, true);
}

export function handleSnapshotResponse(s: RaftState, m: SnapshotResponse): void {
  const pr = s.progress.get(m.from);
  if (!pr) return;
  pr.recentActive = true;
  if (m.installed) {
    if (maybeUpdate(pr, m.snapshotIndex)) maybeCommit(s);
    if (pr.state === 'snapshot') becomeProbe(pr);
    sendAppend(s, pr, true);
    return;
  }
  if (pr.state !== 'snapshot' || m.snapshotIndex !== pr.snapshotIndex || !s.snapshot) return;
  if (m.snapshotIndex !== s.snapshot.meta.index) return startSnapshot(s, pr);
  pr.snapshotOffset = m.nextOffset;
  sendChunk(s, pr);
}

/** After each batch of events: ship new entries (batched, pipelined) and commit updates. */
export function flushLeader(s: RaftState): void {
  if (s.readRoundPending) broadcastHeartbeat(s);
  const delay = s.cfg.commitFlushDelayMs;
  if (s.needBroadcast || s.commitBroadcast) {
    for (const pr of s.progress.values()) {
      const before = s.out.messages.length;
      sendAppend(s, pr, false);
      // Nothing new to send but the commit index moved: tell the follower so it can apply — at once,
      // or after a short wait in which the next batch's append usually carries it (flushCommit).
      if (delay === 0 && s.out.messages.length === before && s.commitBroadcast && needsCommit(s, pr)) sendEmptyAppend(s, pr);
    }
    s.needBroadcast = false;
    s.commitBroadcast = false;
  }
  if (delay === 0) return;
  // A flush is wanted while some follower has not been told the commit index; once appends told
  // them all, the one asked for is called off.
  const wasPending = s.commitFlushPending;
  s.commitFlushPending = false;
  for (const pr of s.progress.values()) if (needsCommit(s, pr)) s.commitFlushPending = true;
  if (s.commitFlushPending && !wasPending) s.out.flushCommitAfterMs = delay;
  if (!s.commitFlushPending && wasPending) s.out.cancelCommitFlush = true;
}

/** A follower in the replicate state that no append has told the commit index it could apply. */
const needsCommit = (s: RaftState, pr: Progress): boolean => pr.state === 'replicate' && pr.commitSent < commitToTell(s, pr);

/** FLUSH_COMMIT: tell every follower the commit index that no append has carried to it yet. */
export function flushCommit(s: RaftState): void {
  s.commitFlushPending = false;
  for (const pr of s.progress.values()) if (needsCommit(s, pr)) sendEmptyAppend(s, pr);
}

export function registerRead(s: RaftState, id: number): void {
  if (s.log.committed < s.termStartIndex) {
    s.readsAwaitingCommit.push(id);
    return;
  }
  if (s.conf.voters.length === 1 && s.conf.voters[0] === s.id) {
    s.out.reads.push({ id, index: s.log.committed });
    return;
  }
  s.reads.push({ id, index: s.log.committed, round: s.round + 1 });
  s.readRoundPending = true;
}

/** ReadIndex (thesis §6.4): a read is safe once a majority answered a round sent after it arrived. */
function confirmReads(s: RaftState): void {
  while (s.reads.length) {
    const r = s.reads[0]!;
    let acks = isVoter(s.conf, s.id) ? 1 : 0;
    for (const v of s.conf.voters) if (v !== s.id && (s.progress.get(v)?.ackedRound ?? 0) >= r.round) acks++;
    if (acks < majority(s.conf.voters.length)) return;
    s.out.reads.push({ id: r.id, index: r.index });
    s.reads.shift();
  }
}

export function startTransfer(s: RaftState, target: string): ProposalError | null {
  if (target === s.id) return null;
  if (!isVoter(s.conf, target)) return { code: 'badConfChange', message: `${target} is not a voter` };
  s.leadTransferee = target;
  s.transferDeadline = s.now + 2 * s.cfg.electionTimeoutMinMs;
  const pr = s.progress.get(target)!;
  if (pr.match === lastIndex(s.log)) sendTimeoutNow(s, target);
  else sendAppend(s, pr, false);
  return null;
}

function sendTimeoutNow(s: RaftState, to: string): void {
  send(s, { type: 'timeoutNow', from: s.id, to, term: s.term });
}

/** CheckQuorum: has a majority of voters been heard from since the last check? */
export function quorumActive(s: RaftState): boolean {
  let active = isVoter(s.conf, s.id) ? 1 : 0;
  for (const v of s.conf.voters) if (v !== s.id && s.progress.get(v)?.recentActive) active++;
  return active >= majority(s.conf.voters.length);
}

export function resetRecentActive(s: RaftState): void {
  for (const pr of s.progress.values()) pr.recentActive = false;
}

/** A leader removed from the configuration steps down once the removal is committed. */
export const removedAndCommitted = (s: RaftState): boolean => !isVoter(s.conf, s.id) && s.confIndex <= s.log.committed;
