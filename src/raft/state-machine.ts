import type { SnapshotData } from './snapshot-data.ts';
import type { Entry } from './types.ts';

/**
 * The replicated state machine a node applies committed commands to.
 * apply() must be deterministic: every node applies the same entries in the same order
 * and must reach the same state and results.
 *
 * Snapshots and restores of a large state must never hold the event loop for long: the node
 * actor drives both one bounded step at a time and yields between steps, while it keeps
 * applying entries (snapshot) or waits (restore).
 */
export interface StateMachine<Result = unknown> {
  /** Apply one committed command entry (type Command); returns the client-visible result. */
  apply(entry: Entry): Result;
  /**
   * Captures the state at the last applied index now (cheaply: no work proportional to the
   * state's size) and encodes it lazily: each iteration yields one piece and does a bounded
   * amount of work. Entries applied meanwhile must not change what the pieces hold.
   */
  snapshotPieces(): Iterable<Uint8Array>;
  /**
   * Replaces the whole state with a snapshot's, one bounded step per iteration. The new state
   * takes effect when the iteration completes; if it throws, the current state stays.
   */
  restoreSteps(data: SnapshotData): Iterable<void>;
}

/** Runs every step of a restore at once (start-up of tests and tools; members use the node's time-sliced loop). */
export function restoreNow(sm: StateMachine<unknown>, data: SnapshotData | Uint8Array): void {
  for (const _ of sm.restoreSteps(data instanceof Uint8Array ? [data] : data));
}
