import { createActor, type Actor } from 'xstate';
import { raftMachine, type RaftEvent } from '../machines/raft.ts';
import { hasMoreToApply, lastIndex, termAt } from '../src/raft/log.ts';
import { snapshotBytes, type SnapshotData } from '../src/raft/snapshot-data.ts';
import type { RaftMessage } from '../src/raft/messages.ts';
import type { Proposal } from '../src/raft/leader.ts';
import { takeReady } from '../src/raft/ready.ts';
import { DEFAULT_ELECTION_TIMEOUT_MS, confAt, createRaftState, type ProposalError, type RaftConfig, type RaftState, type Ready, type Role } from '../src/raft/state.ts';
import type { StateMachine } from '../src/raft/state-machine.ts';
import { EntryType, type ConfChange, type ConfState, type Entry, type NodeId } from '../src/raft/types.ts';
import type { RaftStorage, RecoveryReport } from '../src/storage/types.ts';
import { MembershipError, NodeStoppedError, NotLeaderError, OutcomeUnknownError, ProposalDroppedError } from '../src/errors.ts';
import { silentLogger, type Clock, type Logger, type Transport } from './ports.ts';

export interface RaftNodeOptions<R> {
  id: NodeId;
  /** Initial voters when the storage holds no configuration yet. */
  bootstrap: ConfState;
  storage: RaftStorage;
  stateMachine: StateMachine<R>;
  transport: Transport;
  clock: Clock;
  /** Seeded in the simulator; Math.random in production. Used only for election timeouts. */
  random: () => number;
  logger?: Logger;
  raft?: Partial<RaftConfig>;
  electionTimeoutMs?: { min: number; max: number };
  heartbeatIntervalMs?: number;
  /** Take a snapshot and compact once this many entries were applied since the last one. */
  snapshotEveryEntries?: number;
  /**
   * ...and once the entries applied since then hold at least this fraction of the last snapshot's
   * bytes (default 0.5). A snapshot costs work in proportion to the whole state; this keeps that
   * work in proportion to what was written, however large the state (with 1M keys a snapshot is
   * ~280 MB, and taking one every 10,000 writes kept a member encoding and collecting garbage
   * all the time).
   */
  snapshotMinLogFraction?: number;
}

export interface NodeStatus {
  id: NodeId;
  /** A halted node (stopped, or failed: see `fatal`) is never reported as leader. */
  role: Role;
  /** Why the node halted on its own (a storage failure such as ENOSPC or EIO); null while it runs. */
  fatal: string | null;
  term: number;
  leader: NodeId | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  snapshotIndex: number;
  conf: ConfState;
}

export interface RoleChange {
  at: number;
  from: Role;
  to: Role;
  term: number;
}

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: Error): void;
}

/** Longest stretch of snapshot or restore work between two turns of the event loop. */
const SLICE_MS = 5;
/** A step or apply this long is logged: heartbeats wait behind it. */
const SLOW_STEP_MS = 50;

/** Messages only a leader sends in its own (already durable) term. */
function leaderOnly(m: RaftMessage): boolean {
  return m.type === 'append' || m.type === 'snapshot' || m.type === 'timeoutNow';
}

function proposalError(e: ProposalError): Error {
  if (e.code === 'badConfChange') return new MembershipError(e.message);
  return new NotLeaderError(e.leader, e.code === 'transferring' ? `leadership is being transferred to ${e.leader}` : undefined);
}

/**
 * One Raft member: hosts the role machine and performs its effects in order — install snapshot,
 * persist (fsync), send, apply — then resolves client promises. Events arriving while a persist
 * is in flight queue up and are stepped together: that is the group commit.
 */
export class RaftNode<R = unknown> {
  readonly id: NodeId;
  private readonly o: RaftNodeOptions<R>;
  private readonly log: Logger;
  private raft!: RaftState;
  private actor!: Actor<typeof raftMachine>;
  private queue: RaftEvent[] = [];
  private proposals: Proposal[] = [];
  private readIds: number[] = [];
  private nextId = 1;
  private running = false;
  private stopped = false;
  private waitingProposals = new Map<number, Waiter<{ index: number; result: R }>>();
  private byIndex = new Map<number, { id: number; term: number }>();
  private waitingReads = new Map<number, Waiter<number>>();
  private readsAtIndex: { index: number; id: number }[] = [];
  private appliedIndex = 0;
  private role: Role = 'follower';
  private electionDeadline = Infinity;
  private electionTimer: unknown = null;
  private electionTimerAt = Infinity;
  private heartbeatTimer: unknown = null;
  private quorumTimer: unknown = null;
  private commitFlushTimer: unknown = null;
  private lastSnapshotIndex = 0;
  private snapshotting = false;
  private appliedBytesSinceSnapshot = 0;
  private slowLoggedAt = -Infinity;
  private stallGraceUsed = false;
  /** Election or quorum checks put off because this process itself had stalled (status counter). */
  stallGraces = 0;
  /** Counters for status and metrics. */
  readonly snapshots = { taken: 0, restored: 0, lastIndex: 0, lastBytes: 0, lastMs: 0, lastRestoreMs: 0 };
  /** Term and vote as last handed to storage: a change must be durable before anything depends on it. */
  private storedTV: { term: number; vote: string | null } = { term: 0, vote: null };
  readonly transitions: RoleChange[] = [];
  private listeners = new Set<(n: RaftNode<R>) => void>();
  private applyListeners = new Set<(e: Entry, result: R | undefined) => void>();
  private fatalListeners = new Set<(err: Error) => void>();
  recovery: RecoveryReport | null = null;
  fatal: Error | null = null;

  private constructor(o: RaftNodeOptions<R>) {
    this.o = o;
    this.id = o.id;
    this.log = o.logger ?? silentLogger;
  }

  static async start<R>(o: RaftNodeOptions<R>): Promise<RaftNode<R>> {
    const n = new RaftNode(o);
    await n.init();
    return n;
  }

  private async init(): Promise<void> {
    const loaded = await this.o.storage.load();
    this.recovery = loaded.report;
    if (loaded.report.truncatedBytes > 0 || loaded.report.notes.length) this.log.warn({ report: loaded.report }, 'storage recovery');
    if (loaded.snapshot) await this.restoreSliced(loaded.snapshot.data);
    this.raft = createRaftState({
      // The leader lease and transfer deadline follow the election timeout the node runs with.
      id: this.id, cfg: { electionTimeoutMinMs: this.electionMin, ...this.o.raft }, bootstrap: this.o.bootstrap,
      hardState: loaded.hardState, snapshot: loaded.snapshot, entries: loaded.entries,
    });
    this.appliedIndex = this.raft.log.applied;
    this.storedTV = { term: loaded.hardState.term, vote: loaded.hardState.vote };
    this.lastSnapshotIndex = this.raft.log.snapshotIndex;
    // XState runs synchronously here: no delayed events, so send() returns after the whole macrostep.
    this.actor = createActor(raftMachine, { input: { raft: this.raft } });
    this.actor.start();
    this.o.transport.listen((msg) => {
      if (msg.to === this.id) this.enqueue({ type: 'MSG', msg, now: 0 });
    });
    this.armElection();
    this.kick();
  }

  // ---- public API -------------------------------------------------------------------------

  /** Replicate a command; resolves with the state machine's result once applied here. */
  propose(data: Uint8Array): Promise<{ index: number; result: R }> {
    return this.submit({ id: this.nextId++, data });
  }

  changeMembership(change: ConfChange): Promise<{ index: number; result: R }> {
    return this.submit({ id: this.nextId++, change });
  }

  /** Linearizable read barrier (ReadIndex): resolves with an index once it is applied here. */
  readIndex(): Promise<number> {
    if (this.stopped) return Promise.reject(new NodeStoppedError(this.id));
    const id = this.nextId++;
    const p = new Promise<number>((resolve, reject) => this.waitingReads.set(id, { resolve, reject }));
    this.readIds.push(id);
    this.kick();
    return p;
  }

  transferLeadership(target: NodeId): void {
    this.enqueue({ type: 'TRANSFER_LEADER', target, now: 0 });
  }

  status(): NodeStatus {
    const s = this.raft;
    return {
      id: this.id, role: this.stopped ? 'follower' : this.role, fatal: this.fatal?.message ?? null,
      term: s.term, leader: this.stopped ? null : s.leader, commitIndex: s.log.committed,
      appliedIndex: this.appliedIndex, lastIndex: lastIndex(s.log), snapshotIndex: s.log.snapshotIndex, conf: s.conf,
    };
  }

  get isLeader(): boolean {
    return !this.stopped && this.role === 'leader';
  }

  /** The live role machine (for the dashboard's state chart). */
  get machine(): Actor<typeof raftMachine> {
    return this.actor;
  }

  /** Read-only view of the Raft state, for tests and the simulator's invariant checks. */
  get state(): Readonly<RaftState> {
    return this.raft;
  }

  onChange(fn: (n: RaftNode<R>) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onApply(fn: (e: Entry, result: R | undefined) => void): () => void {
    this.applyListeners.add(fn);
    return () => this.applyListeners.delete(fn);
  }

  /** Clean stop: no more events; pending callers get NodeStoppedError. */
  async stop(): Promise<void> {
    this.halt();
    await this.o.storage.close();
  }

  /** Stop at once without touching storage again (the simulator's crash). */
  halt(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimers();
    this.o.transport.close();
    this.actor?.stop();
    const err = new NodeStoppedError(this.id);
    for (const w of this.waitingProposals.values()) w.reject(err);
    for (const w of this.waitingReads.values()) w.reject(err);
    this.waitingProposals.clear();
    this.waitingReads.clear();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  // ---- the loop ---------------------------------------------------------------------------

  private submit(p: Proposal): Promise<{ index: number; result: R }> {
    if (this.stopped) return Promise.reject(new NodeStoppedError(this.id));
    const promise = new Promise<{ index: number; result: R }>((resolve, reject) => this.waitingProposals.set(p.id, { resolve, reject }));
    this.proposals.push(p);
    this.kick();
    return promise;
  }

  private enqueue(ev: RaftEvent): void {
    if (this.stopped) return;
    this.queue.push(ev);
    this.kick();
  }

  private kick(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    queueMicrotask(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (!this.stopped && (this.queue.length || this.proposals.length || this.readIds.length || hasMoreToApply(this.raft.log))) {
        if (!this.queue.length && !this.proposals.length && !this.readIds.length) {
          // Only a backlog of committed entries left (bounded per step): let IO and timers run first.
          await (this.o.clock.yield?.() ?? Promise.resolve());
          if (this.stopped) break;
        }
        const now = this.o.clock.now();
        const events = this.queue;
        this.queue = [];
        for (const ev of events) {
          ev.now = now;
          this.actor.send(ev);
        }
        if (this.proposals.length) {
          const proposals = this.proposals;
          this.proposals = [];
          this.actor.send({ type: 'PROPOSE', proposals, now });
        }
        if (this.readIds.length) {
          const ids = this.readIds;
          this.readIds = [];
          this.actor.send({ type: 'READ_INDEX', ids, now });
        }
        const err = this.actor.getSnapshot().error;
        if (err) throw err;
        const rd = takeReady(this.raft);
        this.noteSlow('step', now, { events: events.length, messages: rd.messages.length, entries: rd.entries.length });
        await this.perform(rd);
      }
    } catch (e) {
      this.fail(e as Error);
    } finally {
      this.running = false;
    }
  }

  private async perform(rd: Ready): Promise<void> {
    const { storage, transport } = this.o;
    if (rd.snapshotToInstall) {
      const snap = rd.snapshotToInstall;
      await storage.saveSnapshot(snap, { discardLog: true });
      if (this.stopped) return;
      await this.restoreSliced(snap.data);
      if (this.stopped) return;
      this.appliedIndex = snap.meta.index;
      this.lastSnapshotIndex = snap.meta.index;
      for (const [index, p] of this.byIndex) {
        if (index <= snap.meta.index) this.settle(index, p, new OutcomeUnknownError(`entry ${index} was covered by a snapshot from the leader`));
      }
    }
    // A leader's appends (and snapshot chunks, TimeoutNow) go out before its own fsync: followers
    // persist in parallel with it (Raft thesis §10.2.1). The leader still counts itself for commit
    // only once its entries are durable: their answers are stepped after this persist completes.
    // Everything else (votes, acknowledgements) must follow the fsync it depends on.
    // A commit-index-only change is not awaited: the commit index is volatile in Raft (after a
    // crash a lower one is re-learned), nothing sent or applied depends on it being on disk, and
    // the storage's single writer keeps it in order with later writes.
    const hs = rd.hardState;
    const tvChanged = hs !== null && (hs.term !== this.storedTV.term || hs.vote !== this.storedTV.vote);
    const persisting = tvChanged || rd.entries.length > 0;
    if (hs !== null && !persisting) this.inBackground(storage.persist({ hardState: hs }));
    const early = this.raft.cfg.unsafe?.ackBeforePersist ? () => true : leaderOnly;
    if (persisting) for (const m of rd.messages) if (early(m)) transport.send(m);
    if (persisting) {
      await storage.persist({ hardState: hs ?? undefined, entries: rd.entries });
      if (this.stopped) return;
      if (hs !== null) this.storedTV = { term: hs.term, vote: hs.vote };
    }
    // Appends with entries, answers and votes go now; empty appends (commit updates, heartbeats)
    // after applying and settling callers: a caller's reply, published in the first microtask after
    // it is settled, then leaves in the same socket write as they do instead of in a later one
    // (each write cost 0.2-0.4 ms on this busy 2-core machine).
    const sendFirst = (m: RaftMessage) => (!persisting || !early(m)) && !(m.type === 'append' && m.entries.length === 0);
    for (const m of rd.messages) if (sendFirst(m)) transport.send(m);
    for (const p of rd.proposals) {
      if (p.error) {
        this.waitingProposals.get(p.id)?.reject(proposalError(p.error));
        this.waitingProposals.delete(p.id);
      } else {
        this.byIndex.set(p.index!, { id: p.id, term: p.term! });
      }
    }
    const applyStart = this.o.clock.now();
    for (const e of rd.committed) this.apply(e);
    this.noteSlow('apply', applyStart, { entries: rd.committed.length });
    for (const r of rd.reads) {
      if (r.error) {
        this.waitingReads.get(r.id)?.reject(proposalError(r.error));
        this.waitingReads.delete(r.id);
      } else this.readsAtIndex.push({ index: r.index!, id: r.id });
    }
    this.releaseReads();
    for (const m of rd.messages) if ((!persisting || !early(m)) && !sendFirst(m)) transport.send(m);
    this.afterStep(rd);
  }

  /** Logs (at most once a second) a synchronous stretch of work long enough to delay heartbeats. */
  private noteSlow(what: string, since: number, detail: object): void {
    const now = this.o.clock.now();
    const ms = now - since;
    if (ms < SLOW_STEP_MS || now - this.slowLoggedAt < 1000) return;
    this.slowLoggedAt = now;
    this.log.warn({ node: this.id, what, ms: Math.round(ms), ...detail }, 'slow raft step');
  }

  /** A write nobody waits for: its failure still stops the node (the disk state is unknown). */
  private inBackground(p: Promise<void>): void {
    p.catch((e: Error) => {
      if (!this.stopped) this.fail(e);
    });
  }

  private fail(e: Error): void {
    // After stop() or halt() (the simulator's crash) pending IO fails on its own: not news.
    if (this.stopped) return;
    this.fatal = e;
    this.log.error({ err: e, node: this.id }, 'raft node failed; stopping');
    this.halt();
    for (const fn of this.fatalListeners) fn(e);
  }

  /**
   * Called once if the node halts on its own (a storage write or fsync failed: the disk's state is
   * unknown, so it acknowledges nothing more). A member process exits on it (fail-stop) for its
   * supervisor to restart it; a clean stop() does not call it.
   */
  onFatal(fn: (err: Error) => void): () => void {
    this.fatalListeners.add(fn);
    return () => this.fatalListeners.delete(fn);
  }

  private apply(e: Entry): void {
    let result: R | undefined;
    if (e.type === EntryType.Command) result = this.o.stateMachine.apply(e);
    this.appliedIndex = e.index;
    this.appliedBytesSinceSnapshot += e.data?.length ?? 0;
    const p = this.byIndex.get(e.index);
    if (p) {
      if (p.term === e.term) {
        this.byIndex.delete(e.index);
        this.waitingProposals.get(p.id)?.resolve({ index: e.index, result: result as R });
        this.waitingProposals.delete(p.id);
      } else this.settle(e.index, p, new ProposalDroppedError(e.index));
    }
    for (const fn of this.applyListeners) fn(e, result);
  }

  private settle(index: number, p: { id: number }, err: Error): void {
    this.byIndex.delete(index);
    this.waitingProposals.get(p.id)?.reject(err);
    this.waitingProposals.delete(p.id);
  }

  private releaseReads(): void {
    if (!this.readsAtIndex.length) return;
    const keep: { index: number; id: number }[] = [];
    for (const r of this.readsAtIndex) {
      if (r.index <= this.appliedIndex) {
        this.waitingReads.get(r.id)?.resolve(r.index);
        this.waitingReads.delete(r.id);
      } else keep.push(r);
    }
    this.readsAtIndex = keep;
  }

  private afterStep(rd: Ready): void {
    const role = this.actor.getSnapshot().value as Role;
    if (role !== this.role) {
      const change = { at: this.o.clock.now(), from: this.role, to: role, term: this.raft.term };
      this.transitions.push(change);
      if (this.transitions.length > 100) this.transitions.shift();
      this.log.info({ node: this.id, ...change }, 'role change');
      this.role = role;
      this.onRoleChange(role);
    }
    if (rd.resetElectionTimer) this.armElection();
    if (rd.flushCommitAfterMs !== null && this.commitFlushTimer === null) {
      this.commitFlushTimer = this.o.clock.setTimeout(() => {
        this.commitFlushTimer = null;
        this.enqueue({ type: 'FLUSH_COMMIT', now: 0 });
      }, rd.flushCommitAfterMs);
    } else if (rd.cancelCommitFlush && this.commitFlushTimer !== null) {
      this.o.clock.clearTimeout(this.commitFlushTimer);
      this.commitFlushTimer = null;
    }
    const every = this.o.snapshotEveryEntries ?? 10_000;
    const logBytesWanted = this.snapshots.lastBytes * (this.o.snapshotMinLogFraction ?? 0.5);
    if (!this.snapshotting && this.appliedIndex - this.lastSnapshotIndex >= every && this.appliedBytesSinceSnapshot >= logBytesWanted) {
      this.startSnapshot();
    }
    for (const fn of this.listeners) fn(this);
  }

  // ---- snapshots --------------------------------------------------------------------------

  /**
   * Snapshot at the applied index in the background: the state machine captures its state now
   * (cheaply) and encodes it a piece at a time between other work; the storage writes the file
   * outside its WAL queue. Only once the file is durable does the log get compacted (COMPACT).
   * Nothing here holds the event loop for more than a slice, so heartbeats keep their time.
   */
  private startSnapshot(): void {
    const index = this.appliedIndex;
    const term = termAt(this.raft.log, index);
    if (term === undefined) return;
    const meta = { index, term, conf: confAt(this.raft, index) };
    const pieces = this.o.stateMachine.snapshotPieces();
    this.snapshotting = true;
    this.lastSnapshotIndex = index;
    this.appliedBytesSinceSnapshot = 0;
    const started = this.o.clock.now();
    const job = (async () => {
      const data: Uint8Array[] = [];
      await this.sliced(pieces, (p) => data.push(p));
      if (this.stopped) return;
      await this.o.storage.saveSnapshot({ meta, data }, { discardLog: false });
      if (this.stopped) return;
      this.snapshots.taken++;
      this.snapshots.lastIndex = index;
      this.snapshots.lastBytes = snapshotBytes(data);
      this.snapshots.lastMs = this.o.clock.now() - started;
      this.log.info({ node: this.id, index, bytes: this.snapshots.lastBytes, ms: Math.round(this.snapshots.lastMs) }, 'snapshot saved');
      this.enqueue({ type: 'COMPACT', index, data, now: 0 });
    })();
    this.inBackground(job.finally(() => {
      this.snapshotting = false;
    }));
  }

  /** Restores a snapshot one slice at a time (the state machine swaps the new state in at the end). */
  private async restoreSliced(data: SnapshotData): Promise<void> {
    const started = this.o.clock.now();
    await this.sliced(this.o.stateMachine.restoreSteps(data), () => {});
    this.snapshots.restored++;
    this.snapshots.lastBytes = snapshotBytes(data); // the base the next snapshot's interval is measured against
    this.appliedBytesSinceSnapshot = 0;
    this.snapshots.lastRestoreMs = this.o.clock.now() - started;
  }

  /** Runs an iterator's steps, yielding to the event loop whenever a slice of SLICE_MS is used up. */
  private async sliced<T>(steps: Iterable<T>, each: (v: T) => void): Promise<void> {
    let sliceStart = this.o.clock.now();
    for (const v of steps) {
      each(v);
      if (this.stopped) return;
      if (this.o.clock.now() - sliceStart >= SLICE_MS) {
        await (this.o.clock.yield?.() ?? Promise.resolve());
        sliceStart = this.o.clock.now();
      }
    }
  }

  // ---- timers -----------------------------------------------------------------------------

  private get electionMin(): number {
    return this.o.electionTimeoutMs?.min ?? DEFAULT_ELECTION_TIMEOUT_MS.min;
  }

  private get heartbeatMs(): number {
    return this.o.heartbeatIntervalMs ?? 50;
  }

  /**
   * A timer that fires this much after it was due means this process was not running (a GC pause,
   * a stalled host): messages that arrived meanwhile are still unread in the socket. Silence
   * measured across such a stall is no evidence against the leader (or, for a leader, against its
   * followers), so the decision waits for one more round instead.
   */
  private stalledPast(dueAt: number): boolean {
    return this.o.clock.now() - dueAt > this.heartbeatMs;
  }

  /** A leader has no election timer: it is armed when the node leaves that role. */
  private armElection(): void {
    if (this.role === 'leader') return;
    const max = this.o.electionTimeoutMs?.max ?? DEFAULT_ELECTION_TIMEOUT_MS.max;
    const now = this.o.clock.now();
    this.stallGraceUsed = false;
    this.electionDeadline = now + this.electionMin + this.o.random() * (max - this.electionMin);
    if (this.electionTimer === null || this.electionTimerAt > this.electionDeadline) this.scheduleElection();
  }

  private scheduleElection(): void {
    const { clock } = this.o;
    if (this.electionTimer !== null) clock.clearTimeout(this.electionTimer);
    const delay = Math.max(0, this.electionDeadline - clock.now());
    this.electionTimerAt = clock.now() + delay;
    this.electionTimer = clock.setTimeout(() => {
      this.electionTimer = null;
      if (this.stopped) return;
      // Tolerance: clocks with a rate may land a hair short of the deadline in floating point.
      if (clock.now() < this.electionDeadline - 0.01) return this.scheduleElection();
      if (!this.stallGraceUsed && this.stalledPast(this.electionTimerAt)) {
        // Once per timeout: give the leader's messages that waited behind our stall two heartbeats.
        this.stallGraceUsed = true;
        this.stallGraces++;
        this.electionDeadline = clock.now() + 2 * this.heartbeatMs;
        return this.scheduleElection();
      }
      this.enqueue({ type: 'ELECTION_TIMEOUT', now: 0 });
      this.armElection();
    }, delay);
  }

  private onRoleChange(role: Role): void {
    const { clock } = this.o;
    if (role === 'leader' && this.electionTimer !== null) {
      clock.clearTimeout(this.electionTimer);
      this.electionTimer = null;
    }
    if (role === 'leader' && this.heartbeatTimer === null) {
      const hb = this.heartbeatMs;
      const beat = () => {
        this.heartbeatTimer = clock.setTimeout(beat, hb);
        this.enqueue({ type: 'HEARTBEAT_TIMEOUT', now: 0 });
      };
      this.heartbeatTimer = clock.setTimeout(beat, hb);
      let checkDueAt = clock.now() + this.electionMin;
      const check = () => {
        const stalled = this.stalledPast(checkDueAt);
        checkDueAt = clock.now() + this.electionMin;
        this.quorumTimer = clock.setTimeout(check, this.electionMin);
        // After our own stall the followers' answers may be unread: check again next round.
        if (stalled) this.stallGraces++;
        else this.enqueue({ type: 'CHECK_QUORUM', now: 0 });
      };
      this.quorumTimer = clock.setTimeout(check, this.electionMin);
    } else if (role !== 'leader') {
      this.clearLeaderTimers();
      // Stepping down re-arms it through resetElectionTimer too; this keeps the rule local.
      if (this.electionTimer === null) this.armElection();
    }
  }

  private clearLeaderTimers(): void {
    if (this.heartbeatTimer !== null) this.o.clock.clearTimeout(this.heartbeatTimer);
    if (this.quorumTimer !== null) this.o.clock.clearTimeout(this.quorumTimer);
    if (this.commitFlushTimer !== null) this.o.clock.clearTimeout(this.commitFlushTimer);
    this.heartbeatTimer = this.quorumTimer = this.commitFlushTimer = null;
  }

  private clearTimers(): void {
    this.clearLeaderTimers();
    if (this.electionTimer !== null) this.o.clock.clearTimeout(this.electionTimer);
    this.electionTimer = null;
  }
}
