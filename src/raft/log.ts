import { assert } from './assert.ts';
import type { Entry } from './types.ts';

/**
 * The in-memory Raft log: a compacted prefix (snapshotIndex/snapshotTerm) followed by entries.
 * `unstableFrom` is the first index not yet known durable; the node actor persists
 * entries from there on and then calls markStable().
 */
export interface RaftLog {
  snapshotIndex: number;
  snapshotTerm: number;
  /** entries[i].index === snapshotIndex + 1 + i */
  entries: Entry[];
  committed: number;
  /** Highest index handed out for applying. */
  applied: number;
  unstableFrom: number;
}

export function newLog(snapshotIndex = 0, snapshotTerm = 0, entries: Entry[] = []): RaftLog {
  const log: RaftLog = {
    snapshotIndex,
    snapshotTerm,
    entries,
    committed: snapshotIndex,
    applied: snapshotIndex,
    unstableFrom: snapshotIndex + entries.length + 1,
  };
  checkContiguous(log);
  return log;
}

function checkContiguous(log: RaftLog): void {
  for (let i = 0; i < log.entries.length; i++) {
    assert(log.entries[i]!.index === log.snapshotIndex + 1 + i, 'log not contiguous', { at: i, snapshotIndex: log.snapshotIndex });
  }
}

export const lastIndex = (log: RaftLog): number => log.snapshotIndex + log.entries.length;

export function lastTerm(log: RaftLog): number {
  return log.entries.length ? log.entries[log.entries.length - 1]!.term : log.snapshotTerm;
}

/** Term of the entry at index, or undefined when compacted away or not yet in the log. */
export function termAt(log: RaftLog, index: number): number | undefined {
  if (index === log.snapshotIndex) return log.snapshotTerm;
  if (index < log.snapshotIndex || index > lastIndex(log)) return undefined;
  return log.entries[index - log.snapshotIndex - 1]!.term;
}

export function entryAt(log: RaftLog, index: number): Entry | undefined {
  if (index <= log.snapshotIndex || index > lastIndex(log)) return undefined;
  return log.entries[index - log.snapshotIndex - 1];
}

export const matchTerm = (log: RaftLog, index: number, term: number): boolean => termAt(log, index) === term;

/** §5.4.1: is a candidate's log at least as up-to-date as ours? */
export function isUpToDate(log: RaftLog, candLastIndex: number, candLastTerm: number): boolean {
  const t = lastTerm(log);
  return candLastTerm > t || (candLastTerm === t && candLastIndex >= lastIndex(log));
}

/** Entries in [lo, hi] limited by count and bytes (at least one entry when any is available). */
export function slice(log: RaftLog, lo: number, hi: number, maxCount: number, maxBytes: number): Entry[] {
  assert(lo > log.snapshotIndex, 'slice of compacted entries', { lo, snapshotIndex: log.snapshotIndex });
  const end = Math.min(hi, lastIndex(log), lo + maxCount - 1);
  const out: Entry[] = [];
  let bytes = 0;
  for (let i = lo; i <= end; i++) {
    const e = log.entries[i - log.snapshotIndex - 1]!;
    bytes += (e.data?.length ?? 0) + 24;
    if (out.length > 0 && bytes > maxBytes) break;
    out.push(e);
  }
  return out;
}

/** Append entries, truncating any conflicting suffix. Never truncates committed entries. */
export function appendEntries(log: RaftLog, entries: Entry[]): void {
  if (entries.length === 0) return;
  const first = entries[0]!.index;
  assert(first > log.committed, 'truncating committed entries', { first, committed: log.committed });
  assert(first <= lastIndex(log) + 1, 'gap in log append', { first, last: lastIndex(log) });
  const keep = first - log.snapshotIndex - 1;
  if (keep < log.entries.length) log.entries.length = keep;
  for (const e of entries) log.entries.push(e);
  if (first < log.unstableFrom) log.unstableFrom = first;
}

/**
 * Follower side of AppendEntries once prevLogIndex/prevLogTerm matched: skip entries we
 * already have with the same term, append from the first conflict. Returns the last new index.
 */
export function appendFromLeader(log: RaftLog, prevLogIndex: number, entries: Entry[]): number {
  let i = 0;
  for (; i < entries.length; i++) {
    const e = entries[i]!;
    const t = termAt(log, e.index);
    if (t === undefined && e.index <= log.snapshotIndex) continue; // compacted: committed, so it matches
    if (t !== e.term) break;
  }
  if (i < entries.length) appendEntries(log, i === 0 ? entries : entries.slice(i));
  return prevLogIndex + entries.length;
}

/** First index of the run of `term` that contains `index` (for conflict hints). */
export function firstIndexOfTerm(log: RaftLog, index: number, term: number): number {
  let i = index;
  while (i - 1 > log.snapshotIndex && termAt(log, i - 1) === term) i--;
  return i;
}

/** Largest index <= from whose term is <= term (leader's side of the conflict hint). */
export function lastIndexWithTermAtMost(log: RaftLog, from: number, term: number): { index: number; term: number } {
  let i = Math.min(from, lastIndex(log));
  while (i > log.snapshotIndex) {
    const t = termAt(log, i)!;
    if (t <= term) return { index: i, term: t };
    i--;
  }
  return { index: log.snapshotIndex, term: log.snapshotTerm };
}

export function commitTo(log: RaftLog, index: number): boolean {
  if (index <= log.committed) return false;
  assert(index <= lastIndex(log), 'commit beyond last index', { index, last: lastIndex(log) });
  log.committed = index;
  return true;
}

export const stableLastIndex = (log: RaftLog): number => log.unstableFrom - 1;

/** Entries not yet durable. */
export function unstableEntries(log: RaftLog): Entry[] {
  const from = Math.max(log.unstableFrom, log.snapshotIndex + 1);
  return from > lastIndex(log) ? [] : log.entries.slice(from - log.snapshotIndex - 1);
}

export function markStable(log: RaftLog, upTo: number): void {
  if (upTo + 1 > log.unstableFrom) log.unstableFrom = Math.min(upTo, lastIndex(log)) + 1;
}

/** Committed, durable entries not yet handed out for applying (bounded batch). */
/**
 * Committed, stable entries after `applied`: at most maxCount, and no more than maxBytes of entry
 * data (at least one entry), so one step's apply stays short even when entries are large.
 */
export function nextToApply(log: RaftLog, maxCount: number, maxBytes = Infinity): Entry[] {
  let hi = Math.min(log.committed, stableLastIndex(log), log.applied + maxCount);
  if (hi <= log.applied) return [];
  let bytes = 0;
  for (let i = log.applied + 1; i <= hi; i++) {
    bytes += log.entries[i - log.snapshotIndex - 1]!.data?.length ?? 0;
    if (bytes >= maxBytes) {
      hi = i;
      break;
    }
  }
  return log.entries.slice(log.applied - log.snapshotIndex, hi - log.snapshotIndex);
}

/** Whether committed, stable entries are still waiting to be handed out for apply. */
export const hasMoreToApply = (log: RaftLog): boolean => Math.min(log.committed, stableLastIndex(log)) > log.applied;

/** Drop entries up to index (a snapshot now covers them). */
export function compact(log: RaftLog, index: number, term: number): void {
  assert(index <= log.applied, 'compacting unapplied entries', { index, applied: log.applied });
  if (index <= log.snapshotIndex) return;
  assert(termAt(log, index) === term, 'compaction term mismatch', { index, term });
  log.entries = log.entries.slice(index - log.snapshotIndex);
  log.snapshotIndex = index;
  log.snapshotTerm = term;
  if (log.unstableFrom < index + 1) log.unstableFrom = index + 1;
}

/** Replace the whole log by a snapshot from the leader. */
export function restoreFromSnapshot(log: RaftLog, index: number, term: number): void {
  log.entries = [];
  log.snapshotIndex = index;
  log.snapshotTerm = term;
  log.committed = index;
  log.applied = index;
  log.unstableFrom = index + 1;
}
