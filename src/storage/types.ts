import type { Entry, HardState, Snapshot } from '../raft/types.ts';

/** What recovery found and did; logged by the node actor at start. */
export interface RecoveryReport {
  segmentsRead: number;
  recordsRead: number;
  /** Bytes cut from the tail of the last segment because the last write was torn. */
  truncatedBytes: number;
  /** Human-readable notes on anything dropped. */
  notes: string[];
}

export interface LoadedState {
  hardState: HardState;
  snapshot: Snapshot | null;
  /** Contiguous entries following the snapshot (or starting at index 1). */
  entries: Entry[];
  report: RecoveryReport;
}

export interface PersistBatch {
  hardState?: HardState;
  /** Entries to append. An entry with index i replaces every stored entry with index >= i. */
  entries?: Entry[];
}

export interface StorageStats {
  fsyncs: number;
  entriesWritten: number;
  bytesWritten: number;
  persistCalls: number;
}

/** Durable Raft state: one interface, implemented over a real or a simulated file system. */
export interface RaftStorage {
  load(): Promise<LoadedState>;
  /** Durable when the promise resolves (one fdatasync may cover several calls). */
  persist(batch: PersistBatch): Promise<void>;
  /**
   * Durably store a snapshot and compact the log up to its index.
   * discardLog: the snapshot came from the leader and does not match our log: every
   * stored entry after the snapshot index must be forgotten too.
   */
  saveSnapshot(snapshot: Snapshot, opts: { discardLog: boolean }): Promise<void>;
  stats(): StorageStats;
  close(): Promise<void>;
}
