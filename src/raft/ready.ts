import { assert } from './assert.ts';
import { compact, lastIndex, markStable, nextToApply, termAt, unstableEntries } from './log.ts';
import { flushLeader, maybeCommit } from './leader.ts';
import { confAt, emptyOut, type RaftState, type Ready } from './state.ts';
import type { SnapshotData } from './snapshot-data.ts';

/**
 * Collect everything the node actor must do after a batch of events, in the style of
 * etcd-io/raft's Ready. Contract: the actor installs snapshotToInstall, persists hardState and
 * entries, and only then sends messages and applies `committed`; it steps the machine again only
 * after that persist completed. That is why the entries are marked stable here.
 */
export function takeReady(s: RaftState): Ready {
  const entries = unstableEntries(s.log);
  markStable(s.log, lastIndex(s.log));
  if (s.role === 'leader') {
    maybeCommit(s);
    flushLeader(s);
  }
  const out = s.out;
  s.out = emptyOut();
  out.entries = entries;
  const hs = { term: s.term, vote: s.vote, commit: s.log.committed };
  const p = s.persisted;
  if (hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit) {
    out.hardState = hs;
    s.persisted = hs;
  }
  out.committed = nextToApply(s.log, s.cfg.maxApplyBatch, s.cfg.maxApplyBytes);
  if (out.committed.length) s.log.applied = out.committed[out.committed.length - 1]!.index;
  return out;
}

/**
 * The actor took a state-machine snapshot at `index` (an index it had applied) and stored it
 * durably: compact the log and serve it to followers that need it. Ignored when a newer snapshot
 * (from the leader) was installed meanwhile.
 */
export function compactTo(s: RaftState, index: number, data: SnapshotData): void {
  if (index <= s.log.snapshotIndex) return;
  assert(index <= s.log.applied, 'snapshot beyond applied index', { index, applied: s.log.applied });
  const term = termAt(s.log, index)!;
  const snapshot = { meta: { index, term, conf: confAt(s, index) }, data };
  compact(s.log, index, term);
  s.snapshot = snapshot;
}
