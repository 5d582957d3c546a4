import type { Entry } from './types.ts';

/**
 * The replicated state machine a node applies committed commands to.
 * apply() must be deterministic: every node applies the same entries in the same order
 * and must reach the same state and results.
 */
export interface StateMachine<Result = unknown> {
  /** Apply one committed command entry (type Command); returns the client-visible result. */
  apply(entry: Entry): Result;
  /** Serialize the whole state (taken at the last applied index). */
  snapshot(): Uint8Array;
  /** Replace the whole state with a snapshot's. */
  restore(data: Uint8Array): void;
}
