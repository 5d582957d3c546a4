import type { Entry, NodeId, SnapshotMeta } from './types.ts';

/**
 * Raft peer messages. Every message carries the sender's term; `from`/`to` are member ids.
 * Responses are messages too (the transport is one-way publish).
 */
export type RaftMessage =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | SnapshotChunk
  | SnapshotResponse
  | TimeoutNow;

interface Base {
  from: NodeId;
  to: NodeId;
  term: number;
}

/** RequestVote and PreVote. For PreVote `term` is the term the sender would campaign in. */
export interface VoteRequest extends Base {
  type: 'vote';
  pre: boolean;
  lastLogIndex: number;
  lastLogTerm: number;
  /** Campaign started by TimeoutNow (leader transfer): ignore the leader lease. */
  transfer: boolean;
}

export interface VoteResponse extends Base {
  type: 'voteResp';
  pre: boolean;
  granted: boolean;
}

/** AppendEntries; also the heartbeat (entries empty) that carries ReadIndex contexts. */
export interface AppendRequest extends Base {
  type: 'append';
  prevLogIndex: number;
  prevLogTerm: number;
  entries: Entry[];
  commit: number;
  /** Heartbeat round id; echoed back so the leader can confirm ReadIndex requests. */
  round: number;
}

export interface AppendResponse extends Base {
  type: 'appendResp';
  success: boolean;
  /** On success: highest index known to match the leader. On failure: the rejected prevLogIndex. */
  matchIndex: number;
  /** On failure: fast back-off hints (follower's conflicting term and its first index, or its last index). */
  conflictIndex: number;
  conflictTerm: number;
  round: number;
}

/** InstallSnapshot, sent in chunks. */
export interface SnapshotChunk extends Base {
  type: 'snapshot';
  meta: SnapshotMeta;
  offset: number;
  data: Uint8Array;
  done: boolean;
  totalBytes: number;
}

export interface SnapshotResponse extends Base {
  type: 'snapshotResp';
  /** Index of the snapshot this answers. */
  snapshotIndex: number;
  /** Next byte offset the follower expects (== totalBytes and done when installed). */
  nextOffset: number;
  installed: boolean;
  /** The follower rejected the chunk (offset mismatch, stale snapshot): restart from this offset. */
  rejected: boolean;
}

/** Leader transfer: tells the target to campaign at once. */
export interface TimeoutNow extends Base {
  type: 'timeoutNow';
}

export type RaftMessageType = RaftMessage['type'];
export const RAFT_MESSAGE_TYPES: readonly RaftMessageType[] = [
  'vote',
  'voteResp',
  'append',
  'appendResp',
  'snapshot',
  'snapshotResp',
  'timeoutNow',
];
