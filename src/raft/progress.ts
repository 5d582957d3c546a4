import type { NodeId } from './types.ts';

/**
 * The leader's view of one follower (as etcd-io/raft): probe sends one append at a time
 * until the follower's position is known; replicate pipelines up to maxInflight appends;
 * snapshot streams InstallSnapshot chunks.
 */
export interface Progress {
  id: NodeId;
  match: number;
  next: number;
  state: 'probe' | 'replicate' | 'snapshot';
  /** probe: an append is outstanding; wait for its answer or the next heartbeat. */
  probeSent: boolean;
  /** Last index of each in-flight append (replicate state), oldest first. */
  inflight: number[];
  /** Heard from this peer since the last CheckQuorum. */
  recentActive: boolean;
  /** Highest heartbeat round the peer has answered (for ReadIndex). */
  ackedRound: number;
  /** snapshot state: index of the snapshot being sent and the acknowledged byte offset. */
  snapshotIndex: number;
  snapshotOffset: number;
  /** Heartbeats since this follower last made progress while behind (loss detection). */
  stalledTicks: number;
  /** Highest commit index an append sent to this follower lets it learn (commit capped by the append's last index). */
  commitSent: number;
}

export function newProgress(id: NodeId, next: number): Progress {
  return {
    id,
    match: 0,
    next,
    state: 'probe',
    probeSent: false,
    inflight: [],
    recentActive: false,
    ackedRound: 0,
    snapshotIndex: 0,
    snapshotOffset: 0,
    stalledTicks: 0,
    commitSent: 0,
  };
}

export function becomeProbe(pr: Progress): void {
  // Restart from what is known to match: optimistic sends past it may have been lost.
  pr.next = pr.state === 'snapshot' ? Math.max(pr.match, pr.snapshotIndex) + 1 : pr.match + 1;
  pr.state = 'probe';
  pr.snapshotIndex = 0;
  pr.snapshotOffset = 0;
  pr.probeSent = false;
  pr.inflight = [];
}

export function becomeReplicate(pr: Progress): void {
  pr.state = 'replicate';
  pr.next = pr.match + 1;
  pr.probeSent = false;
  pr.inflight = [];
  pr.snapshotIndex = 0;
  pr.snapshotOffset = 0;
}

export function becomeSnapshot(pr: Progress, snapshotIndex: number): void {
  pr.state = 'snapshot';
  pr.snapshotIndex = snapshotIndex;
  pr.snapshotOffset = 0;
  pr.inflight = [];
  pr.probeSent = false;
}

/** A success answer: returns true if match advanced. */
export function maybeUpdate(pr: Progress, index: number): boolean {
  let updated = false;
  if (pr.match < index) {
    pr.match = index;
    updated = true;
    pr.probeSent = false;
  }
  if (pr.next < index + 1) pr.next = index + 1;
  while (pr.inflight.length && pr.inflight[0]! <= index) pr.inflight.shift();
  return updated;
}

export function isPaused(pr: Progress, maxInflight: number): boolean {
  switch (pr.state) {
    case 'probe':
      return pr.probeSent;
    case 'replicate':
      return pr.inflight.length >= maxInflight;
    case 'snapshot':
      return true;
  }
}

/** Record an append just sent whose last entry is lastSent. */
export function sentEntries(pr: Progress, lastSent: number, count: number): void {
  if (pr.state === 'replicate') {
    if (count > 0) {
      pr.next = lastSent + 1;
      pr.inflight.push(lastSent);
    }
  } else if (pr.state === 'probe') {
    pr.probeSent = true;
  }
}
