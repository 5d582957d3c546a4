import { decodeConfEntry, latestConfIn, isVoter, members } from './conf.ts';
import { newLog, lastIndex, entryAt, type RaftLog } from './log.ts';
import { newProgress, type Progress } from './progress.ts';
import type { RaftMessage } from './messages.ts';
import { EntryType, type ConfState, type Entry, type HardState, type NodeId, type Snapshot } from './types.ts';

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface RaftConfig {
  /** Lower bound of the randomized election timeout; also the leader lease for (Pre)Vote. */
  electionTimeoutMinMs: number;
  maxInflight: number;
  maxEntriesPerMsg: number;
  maxBytesPerMsg: number;
  snapshotChunkBytes: number;
  maxApplyBatch: number;
  /** Entry bytes applied in one step at most (large entries: a restarted member's backlog of 400 KB batches took 76 ms per 60 here). */
  maxApplyBytes: number;
  /** A learner may be promoted when it is at most this many entries behind. */
  promoteLagEntries: number;
  /**
   * A commit-index advance with no new entries to carry it waits this long for the next append
   * before an empty append takes it to the followers (0: at once). Under load the next batch carries
   * it, sparing a message each way per follower and batch.
   */
  commitFlushDelayMs: number;
  /**
   * Deliberately broken rules, for proving that the simulator catches them. Never set outside
   * the mutation tests.
   */
  unsafe?: {
    commitPreviousTermByCounting?: boolean;
    grantSecondVote?: boolean;
    skipLeaseCheck?: boolean;
    skipUpToDateCheck?: boolean;
    noNoopAtTermStart?: boolean;
    /** Node actor: send votes and append acknowledgements before the fsync they depend on. */
    ackBeforePersist?: boolean;
  };
}

/**
 * Election timeout of a member (ms), randomized in [min, max]. Wider than the Raft paper's
 * 150-300: under sustained load with a million keys (~400 MB of heap) a member's event loop was
 * measured stalling up to 350-520 ms (garbage collection on a busy 2-core host); at 150-300 those
 * stalls cost one to nine leader changes per million writes, at 400-800 none. Failover after a
 * leader dies is then 539 ms median (437-740 ms measured; etcd 1,181 ms here).
 */
export const DEFAULT_ELECTION_TIMEOUT_MS = { min: 400, max: 800 } as const;

export const defaultRaftConfig: RaftConfig = {
  electionTimeoutMinMs: DEFAULT_ELECTION_TIMEOUT_MS.min,
  maxInflight: 64,
  maxEntriesPerMsg: 512,
  maxBytesPerMsg: 1 << 20,
  snapshotChunkBytes: 64 * 1024,
  maxApplyBatch: 1024,
  maxApplyBytes: 2 * 1024 * 1024,
  promoteLagEntries: 64,
  commitFlushDelayMs: 2,
};

export type ProposalError =
  | { code: 'notLeader'; leader: NodeId | null }
  | { code: 'transferring'; leader: NodeId | null }
  | { code: 'badConfChange'; message: string };

export interface ProposalOutcome {
  id: number;
  index?: number;
  term?: number;
  error?: ProposalError;
}

export interface ReadOutcome {
  id: number;
  index?: number;
  error?: ProposalError;
}

/** What the node actor must do, in order: install snapshot, persist, send, apply. */
export interface Ready {
  snapshotToInstall: Snapshot | null;
  hardState: HardState | null;
  entries: Entry[];
  messages: RaftMessage[];
  committed: Entry[];
  proposals: ProposalOutcome[];
  reads: ReadOutcome[];
  resetElectionTimer: boolean;
  /** Leader: deliver FLUSH_COMMIT after this many ms (a commit advance is waiting for an append). */
  flushCommitAfterMs: number | null;
  /** Leader: appends carried the commit index everywhere; the FLUSH_COMMIT asked for is not needed. */
  cancelCommitFlush: boolean;
}

export const emptyOut = (): Ready => ({
  snapshotToInstall: null,
  hardState: null,
  entries: [],
  messages: [],
  committed: [],
  proposals: [],
  reads: [],
  resetElectionTimer: false,
  flushCommitAfterMs: null,
  cancelCommitFlush: false,
});

export interface PendingRead {
  id: number;
  index: number;
  round: number;
}

export interface IncomingSnapshot {
  index: number;
  term: number;
  offset: number;
  chunks: Uint8Array[];
}

/** All Raft state of one member: plain data, mutated only by the pure core's functions. */
export interface RaftState {
  id: NodeId;
  cfg: RaftConfig;
  role: Role;
  term: number;
  vote: NodeId | null;
  leader: NodeId | null;
  log: RaftLog;
  bootstrapConf: ConfState;
  conf: ConfState;
  /** Index (and term) of the entry that set conf; 0 when it comes from a snapshot or bootstrap. */
  confIndex: number;
  confTerm: number;
  snapshot: Snapshot | null;
  incoming: IncomingSnapshot | null;
  votes: Map<NodeId, boolean>;
  progress: Map<NodeId, Progress>;
  /** Local monotonic time of the event being handled. */
  now: number;
  leaderContactAt: number;
  /** The next campaign was asked for by TimeoutNow: voters skip their lease check. */
  campaignTransfer: boolean;
  leadTransferee: NodeId | null;
  transferDeadline: number;
  /** Index of the leader's no-op; reads and conf changes wait until it commits. */
  termStartIndex: number;
  round: number;
  readRoundPending: boolean;
  reads: PendingRead[];
  readsAwaitingCommit: number[];
  needBroadcast: boolean;
  commitBroadcast: boolean;
  /** Leader: a FLUSH_COMMIT was asked for and has not arrived yet. */
  commitFlushPending: boolean;
  persisted: HardState;
  out: Ready;
}

export function createRaftState(opts: {
  id: NodeId;
  cfg?: Partial<RaftConfig>;
  bootstrap: ConfState;
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}): RaftState {
  const snap = opts.snapshot;
  const log = newLog(snap?.meta.index ?? 0, snap?.meta.term ?? 0, opts.entries);
  const s: RaftState = {
    id: opts.id,
    cfg: { ...defaultRaftConfig, ...opts.cfg },
    role: 'follower',
    term: opts.hardState.term,
    vote: opts.hardState.vote,
    leader: null,
    log,
    bootstrapConf: opts.bootstrap,
    // The snapshot carries the configuration in force at its index; the bootstrap is only for an empty store.
    conf: snap?.meta.conf ?? opts.bootstrap,
    confIndex: 0,
    confTerm: 0,
    snapshot: snap,
    incoming: null,
    votes: new Map(),
    progress: new Map(),
    now: 0,
    leaderContactAt: -Infinity,
    campaignTransfer: false,
    leadTransferee: null,
    transferDeadline: 0,
    termStartIndex: Number.MAX_SAFE_INTEGER,
    round: 0,
    readRoundPending: false,
    reads: [],
    readsAwaitingCommit: [],
    needBroadcast: false,
    commitBroadcast: false,
    commitFlushPending: false,
    persisted: { ...opts.hardState },
    out: emptyOut(),
  };
  // Entries loaded from disk are durable; commit may not exceed what we have.
  log.committed = Math.min(Math.max(opts.hardState.commit, log.snapshotIndex), lastIndex(log));
  refreshConf(s);
  return s;
}

export const send = (s: RaftState, msg: RaftMessage): void => {
  s.out.messages.push(msg);
};

export const others = (s: RaftState): NodeId[] => members(s.conf).filter((m) => m !== s.id);
export const otherVoters = (s: RaftState): NodeId[] => s.conf.voters.filter((m) => m !== s.id);
/**
 * May this node start an election? Voters may. So may a node whose own removal is the latest,
 * still uncommitted, configuration entry in its log: a leader that removed itself and then lost
 * its quorum (CheckQuorum) or crashed before committing it. It may be the only holder of that
 * entry, and then the remaining voters, still using the old configuration, can only win with its
 * vote, which it denies because their logs are behind: no leader ever again. It campaigns for a
 * majority of the new configuration (as the leader that proposed the change counted it) and steps
 * down once the removal commits.
 */
export function canCampaign(s: RaftState): boolean {
  if (isVoter(s.conf, s.id)) return true;
  if (s.confIndex <= s.log.committed) return false;
  const e = entryAt(s.log, s.confIndex);
  if (!e?.data || e.type !== EntryType.ConfChange) return false;
  const { change } = decodeConfEntry(e.data);
  return change.op === 'remove' && change.node === s.id;
}

/** Recompute the configuration from the log if the entry that set it changed or a newer one arrived. */
export function refreshConf(s: RaftState, appended?: readonly Entry[]): void {
  const cur = s.confIndex > s.log.snapshotIndex ? entryAt(s.log, s.confIndex) : undefined;
  const stillValid = s.confIndex === 0 || (cur && cur.type === EntryType.ConfChange && cur.term === s.confTerm);
  // While the current configuration entry is still in the log, any newer one can only have come
  // with the entries just appended: scan those, not the whole log (a follower does this per append).
  const newest = latestConfIn(stillValid && appended ? appended : s.log.entries);
  if (stillValid && (!newest || newest.index <= s.confIndex)) return;
  if (newest) {
    s.conf = newest.conf;
    s.confIndex = newest.index;
    s.confTerm = entryAt(s.log, newest.index)!.term;
  } else {
    s.conf = s.snapshot?.meta.conf ?? s.bootstrapConf;
    s.confIndex = 0;
    s.confTerm = 0;
  }
  syncProgress(s);
}

/** Leader: keep one Progress per other member of the current configuration. */
export function syncProgress(s: RaftState): void {
  if (s.role !== 'leader') return;
  const want = new Set(others(s));
  for (const id of s.progress.keys()) if (!want.has(id)) s.progress.delete(id);
  for (const id of want) {
    if (!s.progress.has(id)) {
      const pr = newProgress(id, lastIndex(s.log) + 1);
      pr.recentActive = true;
      s.progress.set(id, pr);
    }
  }
}

/** Configuration in force at a log index (for snapshot metadata). */
export function confAt(s: RaftState, index: number): ConfState {
  if (s.confIndex <= index) return s.conf;
  for (let i = index; i > s.log.snapshotIndex; i--) {
    const e = entryAt(s.log, i)!;
    if (e.type === EntryType.ConfChange) return latestConfIn([e])!.conf;
  }
  return s.snapshot?.meta.conf ?? s.bootstrapConf;
}
