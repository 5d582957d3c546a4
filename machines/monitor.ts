import { enqueueActions, setup } from 'xstate';
import { decideEvictions, type EvictionDecision, type Tracked } from '../src/monitor/evict.ts';

/**
 * The monitor chart (one per member process; only the leader acts):
 *
 *   follower ──ROLE(leader)──▶ leader ──ROLE(not leader)──▶ follower
 *      │ OBSERVED / GONE          │ OBSERVED / GONE: track    ▲ ROLE(leader, new term): re-enter,
 *      ▼ track (own clock)        │ TICK: discount own stall, │ a fresh grace period
 *                                 ▼ reconcile, decide, emit `propose` per decision
 *   any ──STOP──▶ stopped
 *
 * Every member tracks, on its own monotonic clock (`now` on each event), when it last saw each
 * monitored entry change, so a member that becomes leader already knows the revisions; but it
 * judges silence only from its own election on (`graceStart`): it cannot know what the old leader
 * heard. Decisions come out as emitted `propose` events (data), which the actor turns into
 * conditional writes, and a key with a write in flight is not decided again until SETTLED.
 *
 * Deviation from a pure-`assign` style, as in machines/raft.ts and for the same reason: the
 * tracked map is mutated in place. It receives one event per heartbeat of every member; copying
 * it on each would make a heartbeat cost O(members).
 */
export type MonitorEvent =
  /** A committed put of a monitored entry, seen at `now`. */
  | { type: 'OBSERVED'; key: string; revision: number; offline: boolean; now: number }
  /** A committed delete of a monitored entry. */
  | { type: 'GONE'; key: string }
  /**
   * Time to judge. `entries` is the store's current listing of monitored entries: a snapshot
   * installed from the leader replaces the store without change events, so the tracked map is
   * reconciled with it (anything unexpected counts as seen now: a later eviction, never an early one).
   */
  | { type: 'TICK'; now: number; entries?: readonly { key: string; revision: number; offline: boolean }[] }
  | { type: 'ROLE'; leader: boolean; term: number; now: number }
  /** The write for `key` finished (applied, casFailed or failed): it may be decided again. */
  | { type: 'SETTLED'; key: string }
  | { type: 'STOP' };

/**
 * propose: a decision to carry out, with the term it was taken in (half of the fencing token).
 * paused: this member's ticks came `pausedMs` late (a stalled process): that time was not counted.
 */
export type MonitorEmitted = { type: 'propose'; decision: EvictionDecision; term: number } | { type: 'paused'; pausedMs: number };

export interface MonitorInput {
  heartbeatTimeoutMs: number;
  offlineRetentionMs: number;
  /** The expected time between TICKs. */
  checkEveryMs: number;
}

export interface MonitorContext extends MonitorInput {
  tracked: Map<string, Tracked>;
  inFlight: Set<string>;
  /** Own-clock time this member became leader; silence before it is not counted. */
  graceStart: number;
  term: number;
  /** `now` of the previous TICK in this term, to notice our own stalls. */
  lastTickAt: number | null;
}

type Ev<T extends MonitorEvent['type']> = Extract<MonitorEvent, { type: T }>;

const observed = { actions: 'track' } as const;
const gone = { actions: 'untrack' } as const;

export const monitorMachine = setup({
  types: { context: {} as MonitorContext, events: {} as MonitorEvent, input: {} as MonitorInput, emitted: {} as MonitorEmitted },
  guards: {
    isLeader: ({ event }) => (event as Ev<'ROLE'>).leader,
    newTerm: ({ context, event }) => (event as Ev<'ROLE'>).leader && (event as Ev<'ROLE'>).term !== context.term,
  },
  actions: {
    track: ({ context, event }) => {
      const e = event as Ev<'OBSERVED'>;
      context.tracked.set(e.key, { revision: e.revision, offline: e.offline, seenAt: e.now });
    },
    untrack: ({ context, event }) => {
      context.tracked.delete((event as Ev<'GONE'>).key);
    },
    startTerm: ({ context, event }) => {
      const e = event as Ev<'ROLE'>;
      context.graceStart = e.now;
      context.term = e.term;
      context.lastTickAt = null;
      // Writes of an earlier term settle on their own; this term decides afresh.
      context.inFlight.clear();
    },
    settle: ({ context, event }) => {
      context.inFlight.delete((event as Ev<'SETTLED'>).key);
    },
    judge: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Ev<'TICK'>;
      const pausedMs = context.lastTickAt === null ? 0 : e.now - context.lastTickAt - context.checkEveryMs;
      if (pausedMs > context.checkEveryMs) {
        // We were not running (GC, an overloaded host, SIGSTOP): heartbeats that arrived meanwhile
        // may still sit unread in our sockets. Our own pause is nobody's silence.
        for (const t of context.tracked.values()) if (t.seenAt <= context.lastTickAt!) t.seenAt = Math.min(e.now, t.seenAt + pausedMs);
        enqueue.emit({ type: 'paused', pausedMs });
      }
      context.lastTickAt = e.now;
      if (e.entries) reconcile(context.tracked, e.entries, e.now);
      const decisions = decideEvictions({
        tracked: context.tracked, now: e.now, graceStart: context.graceStart, inFlight: context.inFlight,
        heartbeatTimeoutMs: context.heartbeatTimeoutMs, offlineRetentionMs: context.offlineRetentionMs,
      });
      for (const decision of decisions) {
        context.inFlight.add(decision.key);
        enqueue.emit({ type: 'propose', decision, term: context.term });
      }
    }),
  },
}).createMachine({
  id: 'monitor',
  context: ({ input }) => ({ ...input, tracked: new Map(), inFlight: new Set(), graceStart: 0, term: 0, lastTickAt: null }),
  initial: 'follower',
  on: { STOP: '.stopped' },
  states: {
    follower: {
      on: {
        OBSERVED: observed,
        GONE: gone,
        ROLE: { guard: 'isLeader', target: 'leader', actions: 'startTerm' },
      },
    },
    leader: {
      on: {
        OBSERVED: observed,
        GONE: gone,
        TICK: { actions: 'judge' },
        SETTLED: { actions: 'settle' },
        ROLE: [
          { guard: 'newTerm', target: 'leader', reenter: true, actions: 'startTerm' },
          { guard: 'isLeader' },
          { target: 'follower' },
        ],
      },
    },
    stopped: { type: 'final' },
  },
});

function reconcile(tracked: Map<string, Tracked>, entries: readonly { key: string; revision: number; offline: boolean }[], now: number): void {
  const present = new Set<string>();
  for (const e of entries) {
    present.add(e.key);
    const t = tracked.get(e.key);
    if (!t || t.revision !== e.revision || t.offline !== e.offline) tracked.set(e.key, { revision: e.revision, offline: e.offline, seenAt: now });
  }
  for (const key of tracked.keys()) if (!present.has(key)) tracked.delete(key);
}
