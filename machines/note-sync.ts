import { assign, setup } from 'xstate';

/**
 * The note-sync lifecycle chart (what the dashboard draws for each server's notebook copy):
 *
 *   loading ──LOADED──▶ live ◀──WATCH_OK / EVENT── reconnecting
 *     │  ▲               │ ──WATCH_ERROR──────────────▶ │
 *     │  └─RETRY_DUE─ backoff                           │
 *     └──LOAD_FAILED──▶  ▲      live / reconnecting ──RESYNC_STARTED──▶ resyncing ──RESYNCED──▶ live
 *   any ──STOP──▶ stopped
 *
 * loading: the initial list of notes/ and the opening of the watch. live: watch events are
 * applied in log order. reconnecting: the watch lost its member and the client is moving it to
 * another; the local notebook is intact, only possibly behind. resyncing: the watch history was
 * compacted (e.g. every member restarted) and the local notebook is replaced by a fresh list.
 *
 * Pure: no IO, timers or clock. The actor (actors/note-sync.ts) provides the effects `startLoad`
 * (list + watch, then sends LOADED or LOAD_FAILED), `scheduleRetry` / `cancelRetry` (a timer of
 * `context.delayMs` that sends RETRY_DUE) and `stopWatch`. The delay policy arrives through input.
 */
export type NoteSyncEvent =
  | { type: 'LOADED'; revision: number }
  | { type: 'LOAD_FAILED'; error: string }
  | { type: 'RETRY_DUE' }
  | { type: 'EVENT'; revision: number }
  | { type: 'WATCH_ERROR'; error: string }
  | { type: 'WATCH_OK' }
  | { type: 'RESYNC_STARTED' }
  | { type: 'RESYNCED'; revision: number }
  | { type: 'STOP' };

export interface NoteSyncInput {
  /** Backoff before load attempt `attempt` + 1 (1 after the first failure). */
  nextDelayMs(attempt: number): number;
}

export interface NoteSyncContext {
  /** Highest revision applied to the local notebook. */
  revision: number;
  loadAttempts: number;
  delayMs: number;
  resyncs: number;
  watchErrors: number;
  lastError: string | null;
  nextDelayMs: (attempt: number) => number;
}

export const noteSyncMachine = setup({
  types: { context: {} as NoteSyncContext, events: {} as NoteSyncEvent, input: {} as NoteSyncInput },
  actions: {
    // Effects, replaced by the actor; no-ops here so the chart can run (and be drawn) alone.
    startLoad: () => {},
    scheduleRetry: () => {},
    cancelRetry: () => {},
    stopWatch: () => {},
    noteRevision: assign({
      revision: ({ context, event }) => ('revision' in event ? Math.max(context.revision, event.revision) : context.revision),
    }),
    // A resync replaces the notebook: its revision may be below what the watch had reached.
    takeRevision: assign({ revision: ({ context, event }) => ('revision' in event ? event.revision : context.revision) }),
    planRetry: assign(({ context, event }) => {
      const loadAttempts = context.loadAttempts + 1;
      return { loadAttempts, delayMs: context.nextDelayMs(loadAttempts), lastError: event.type === 'LOAD_FAILED' ? event.error : context.lastError };
    }),
    noteWatchError: assign({
      watchErrors: ({ context }) => context.watchErrors + 1,
      lastError: ({ context, event }) => (event.type === 'WATCH_ERROR' ? event.error : context.lastError),
    }),
    countResync: assign({ resyncs: ({ context }) => context.resyncs + 1 }),
    clearDelay: assign({ delayMs: 0 }),
  },
}).createMachine({
  id: 'noteSync',
  context: ({ input }) => ({ revision: 0, loadAttempts: 0, delayMs: 0, resyncs: 0, watchErrors: 0, lastError: null, nextDelayMs: input.nextDelayMs }),
  initial: 'loading',
  on: {
    STOP: { target: '.stopped', actions: 'stopWatch' },
  },
  states: {
    loading: {
      entry: 'startLoad',
      on: {
        LOADED: { target: 'live', actions: 'takeRevision' },
        LOAD_FAILED: { target: 'backoff', actions: 'planRetry' },
      },
    },
    backoff: {
      entry: 'scheduleRetry',
      exit: ['cancelRetry', 'clearDelay'],
      on: { RETRY_DUE: 'loading' },
    },
    live: {
      on: {
        EVENT: { actions: 'noteRevision' },
        WATCH_ERROR: { target: 'reconnecting', actions: 'noteWatchError' },
        RESYNC_STARTED: { target: 'resyncing', actions: 'countResync' },
      },
    },
    reconnecting: {
      on: {
        EVENT: { target: 'live', actions: 'noteRevision' },
        WATCH_OK: 'live',
        WATCH_ERROR: { actions: 'noteWatchError' },
        RESYNC_STARTED: { target: 'resyncing', actions: 'countResync' },
      },
    },
    resyncing: {
      on: {
        RESYNCED: { target: 'live', actions: 'takeRevision' },
      },
    },
    stopped: { type: 'final' },
  },
});

export type NoteSyncState = 'loading' | 'backoff' | 'live' | 'reconnecting' | 'resyncing' | 'stopped';
