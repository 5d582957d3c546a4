import { assign, setup } from 'xstate';

/**
 * The client outbox chart: one durable queue, drained strictly one item at a time.
 *
 *   idle ──ENQUEUED──▶ sending ──SENT / final FAILED──▶ idle (and on to sending if more wait)
 *                        │  ▲
 *      FAILED(retryable) ▼  │ RETRY_DUE
 *                       backoff
 *   any ──CLOSE──▶ closed
 *
 * Pure: no timers, clock, randomness or IO. The outbox actor (actors/outbox.ts) provides the
 * three effects through `machine.provide`: `submitHead` (send the head item), `scheduleRetry`
 * (start a timer of `context.delayMs` that sends RETRY_DUE) and `cancelRetry`. The delay policy
 * comes in through `input.nextDelayMs`, so the actor decides jitter and the chart stays replayable.
 */
export type OutboxEvent =
  | { type: 'ENQUEUED'; seq: number }
  | { type: 'SENT'; seq: number; result: unknown }
  | { type: 'FAILED'; seq: number; retryable: boolean; error: string }
  | { type: 'RETRY_DUE' }
  | { type: 'CLOSE' };

export interface OutboxInput {
  /** Items already durable when the machine starts (recovered from disk). */
  pending: number;
  /** Backoff before retry number `attempt` (1 for the first retry). */
  nextDelayMs(attempt: number): number;
}

export interface OutboxContext {
  /** Durable items not yet finished, the head included. */
  pending: number;
  /** Failed attempts of the current head (reset when it finishes). */
  attempt: number;
  /** Delay of the scheduled retry while in `backoff`, else 0. */
  delayMs: number;
  /** Message of the latest failure, for the dashboard. */
  lastError: string | null;
  nextDelayMs: (attempt: number) => number;
}

export const outboxMachine = setup({
  types: { context: {} as OutboxContext, events: {} as OutboxEvent, input: {} as OutboxInput },
  guards: {
    hasPending: ({ context }) => context.pending > 0,
    retryable: ({ event }) => event.type === 'FAILED' && event.retryable,
  },
  actions: {
    // Effects, replaced by the actor; no-ops here so the chart can run (and be drawn) alone.
    submitHead: () => {},
    scheduleRetry: () => {},
    cancelRetry: () => {},
    countEnqueued: assign({ pending: ({ context }) => context.pending + 1 }),
    // The head left the queue (committed or failed for good): the next item starts fresh.
    finishHead: assign({
      pending: ({ context }) => context.pending - 1,
      attempt: 0,
      delayMs: 0,
      lastError: ({ context, event }) => (event.type === 'FAILED' ? event.error : context.lastError),
    }),
    planRetry: assign(({ context, event }) => {
      const attempt = context.attempt + 1;
      return {
        attempt,
        delayMs: context.nextDelayMs(attempt),
        lastError: event.type === 'FAILED' ? event.error : context.lastError,
      };
    }),
    clearDelay: assign({ delayMs: 0 }),
  },
}).createMachine({
  id: 'outbox',
  context: ({ input }) => ({ pending: input.pending, attempt: 0, delayMs: 0, lastError: null, nextDelayMs: input.nextDelayMs }),
  initial: 'idle',
  on: {
    CLOSE: '.closed',
  },
  states: {
    idle: {
      // Also the start state after a restart with recovered items: move on at once.
      always: { guard: 'hasPending', target: 'sending' },
      on: { ENQUEUED: { target: 'sending', actions: 'countEnqueued' } },
    },
    sending: {
      entry: 'submitHead',
      on: {
        ENQUEUED: { actions: 'countEnqueued' },
        SENT: { target: 'idle', actions: 'finishHead' },
        FAILED: [
          { guard: 'retryable', target: 'backoff', actions: 'planRetry' },
          { target: 'idle', actions: 'finishHead' },
        ],
      },
    },
    backoff: {
      entry: 'scheduleRetry',
      exit: ['cancelRetry', 'clearDelay'],
      on: {
        ENQUEUED: { actions: 'countEnqueued' },
        RETRY_DUE: 'sending',
      },
    },
    closed: { type: 'final' },
  },
});
