import { createActor, type Actor } from 'xstate';
import { raftMachine, type RaftEvent } from '../../machines/raft.ts';
import type { RaftMessage } from '../raft/messages.ts';
import { takeReady } from '../raft/ready.ts';
import { createRaftState, type RaftConfig, type RaftState } from '../raft/state.ts';
import type { ConfChange, Entry, NodeId } from '../raft/types.ts';
import { SafetyChecker } from './invariants.ts';

/** An event without its time stamp (distributes over the union). */
type WithoutNow<E> = E extends unknown ? Omit<E, 'now'> : never;

interface CoreNode {
  id: NodeId;
  state: RaftState;
  actor: Actor<typeof raftMachine>;
  up: boolean;
  applied: Entry[];
}

/**
 * A hand-driven cluster over the pure core and the role machine, for scripted scenarios such as
 * the Raft paper's Figure 8. No timers and no randomness: the script sends timeouts, chooses which
 * in-flight messages are delivered or dropped, and advances time. Persistence is immediate (each
 * Ready is "durable" at once) and a crash keeps exactly that durable state. The same safety checks
 * as the simulator run on every step; violations are collected, not thrown, so a script can finish.
 */
export class CoreCluster {
  readonly safety = new SafetyChecker();
  readonly violations: string[] = [];
  /** In-flight messages, oldest first. */
  pending: RaftMessage[] = [];
  now = 1000;
  readonly trace: string[] = [];
  private nodes = new Map<NodeId, CoreNode>();

  constructor(readonly ids: readonly NodeId[], private readonly cfg: Partial<RaftConfig> = {}) {
    for (const id of ids) this.nodes.set(id, this.create(id, { term: 0, vote: null, commit: 0 }, []));
  }

  private create(id: NodeId, hardState: { term: number; vote: NodeId | null; commit: number }, entries: Entry[]): CoreNode {
    const state = createRaftState({ id, cfg: this.cfg, bootstrap: { voters: [...this.ids], learners: [] }, hardState, snapshot: null, entries });
    const actor = createActor(raftMachine, { input: { raft: state } });
    actor.start();
    this.safety.onRestore(id, 0);
    return { id, state, actor, up: true, applied: [] };
  }

  node(id: NodeId): CoreNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  state(id: NodeId): Readonly<RaftState> {
    return this.node(id).state;
  }

  role(id: NodeId): string {
    return String(this.node(id).actor.getSnapshot().value);
  }

  leaders(): NodeId[] {
    return this.ids.filter((id) => this.node(id).up && this.role(id) === 'leader');
  }

  advance(ms: number): void {
    this.now += ms;
  }

  /** Step one event into a live node, then perform its Ready (persist at once, queue messages, apply). */
  step(id: NodeId, ev: WithoutNow<RaftEvent>): void {
    const n = this.node(id);
    if (!n.up) return;
    const before = this.role(id);
    n.actor.send({ ...ev, now: this.now } as RaftEvent);
    const err = n.actor.getSnapshot().error;
    if (err) {
      // The core's own assertions (e.g. "truncating committed entries") stop the node, as in the actor.
      this.violations.push(`${id} failed: ${(err as Error).message}`);
      this.crash(id);
      return;
    }
    const rd = takeReady(n.state);
    this.pending.push(...rd.messages);
    for (const e of rd.committed) {
      n.applied.push(e);
      this.guard(() => this.safety.onApply(id, e));
    }
    const after = this.role(id);
    if (after !== before) {
      this.trace.push(`${id} ${before} -> ${after} term ${n.state.term}`);
      if (after === 'leader') {
        this.guard(() => this.safety.onLeader(id, n.state.term));
        this.guard(() => this.safety.checkLeaderLog(id, n.state));
      }
    }
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.violations.push((e as Error).message);
    }
  }

  timeout(id: NodeId): void {
    this.step(id, { type: 'ELECTION_TIMEOUT' });
  }

  heartbeat(id: NodeId): void {
    this.step(id, { type: 'HEARTBEAT_TIMEOUT' });
  }

  checkQuorum(id: NodeId): void {
    this.step(id, { type: 'CHECK_QUORUM' });
  }

  propose(id: NodeId, data: Uint8Array): void {
    this.step(id, { type: 'PROPOSE', proposals: [{ id: 0, data }] });
  }

  changeMembership(id: NodeId, change: ConfChange): void {
    this.step(id, { type: 'PROPOSE', proposals: [{ id: 0, change }] });
  }

  /**
   * Deliver in-flight messages matching `pred` (and those they cause, if they match too), oldest
   * first, until none matches. Messages that do not match stay in flight. Messages to a node that
   * is down are lost.
   */
  deliver(pred: (m: RaftMessage) => boolean = () => true, maxMessages = 10_000): number {
    let count = 0;
    for (;;) {
      const i = this.pending.findIndex(pred);
      if (i < 0) return count;
      const [m] = this.pending.splice(i, 1);
      if (++count > maxMessages) throw new Error('deliver: message storm');
      const to = this.nodes.get(m!.to);
      if (to?.up) this.step(m!.to, { type: 'MSG', msg: m! });
    }
  }

  /** Deliver only messages between members of `group` (both ends inside). */
  deliverWithin(group: readonly NodeId[]): number {
    return this.deliver((m) => group.includes(m.from) && group.includes(m.to));
  }

  /** Lose in-flight messages matching `pred` (all by default). */
  drop(pred: (m: RaftMessage) => boolean = () => true): void {
    this.pending = this.pending.filter((m) => !pred(m));
  }

  /** The node stops; it keeps what it persisted (all of its Ready was made durable at once). */
  crash(id: NodeId): void {
    const n = this.node(id);
    if (!n.up) return;
    n.up = false;
    n.actor.stop();
    this.drop((m) => m.to === id || m.from === id);
    this.trace.push(`${id} crashed`);
  }

  /** Restart from the durable state: term, vote, commit and the log. */
  restart(id: NodeId): void {
    const old = this.node(id);
    if (old.up) return;
    const s = old.state;
    const n = this.create(id, { term: s.term, vote: s.vote, commit: s.log.committed }, [...s.log.entries]);
    this.nodes.set(id, n);
    this.trace.push(`${id} restarted`);
  }

  /**
   * Let `id` campaign (after the leader lease expired), exchanging only (Pre)Vote traffic with
   * `voters`; tries up to `attempts` election timeouts (a first PreVote round may just teach it
   * the term). What the new leader sends stays in flight.
   */
  elect(id: NodeId, voters: readonly NodeId[], attempts = 3): boolean {
    const group = [id, ...voters.filter((v) => v !== id)];
    for (let i = 0; i < attempts; i++) {
      this.advance(1000);
      this.timeout(id);
      this.deliver((m) => (m.type === 'vote' || m.type === 'voteResp') && group.includes(m.from) && group.includes(m.to));
      if (this.role(id) === 'leader') return true;
    }
    return false;
  }

  /** Everything up, all messages delivered, heartbeats until every live node applied the leader's commit. */
  settle(rounds = 20): void {
    for (const id of this.ids) this.restart(id);
    for (let r = 0; r < rounds; r++) {
      this.advance(60);
      for (const l of this.leaders()) this.heartbeat(l);
      this.deliver();
      if (!this.leaders().length) {
        this.advance(1000);
        this.timeout(this.ids[r % this.ids.length]!);
        this.deliver();
      }
    }
  }
}
