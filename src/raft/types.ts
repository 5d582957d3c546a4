import type { SnapshotData } from './snapshot-data.ts';
/** Plain data shared by the pure Raft core, the role machine, storage and transport. */

export type NodeId = string;

/** Entry kinds. Numbers keep the wire and the WAL small. */
export const EntryType = { Noop: 0, Command: 1, ConfChange: 2 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  index: number;
  term: number;
  type: EntryType;
  /** Command payload (opaque to Raft) or encoded ConfChange; null for no-ops. */
  data: Uint8Array | null;
}

/** What must be durable before any message that depends on it is sent. */
export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
}

/** Cluster configuration: voters decide, learners only receive the log. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMeta {
  index: number;
  term: number;
  conf: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  /** The state machine's encoding in pieces (see snapshot-data.ts). */
  data: SnapshotData;
}

/** Single-server membership changes (no joint consensus). */
export type ConfChange =
  | { op: 'addLearner'; node: NodeId }
  | { op: 'promote'; node: NodeId }
  | { op: 'remove'; node: NodeId };
