import test from 'ava';
import { RaftNode } from '../actors/node.ts';
import type { Clock, Transport } from '../actors/ports.ts';
import type { RaftMessage } from '../src/raft/messages.ts';
import { KvStateMachine } from '../src/sm/kv.ts';
import { DiskRaftStorage } from '../src/storage/raft-storage.ts';
import { SimFileSystem } from '../src/storage/sim-fs.ts';

/** A manual clock: timers run only when the test advances time. */
class ManualClock implements Clock {
  private t = 0;
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Runs every timer due within `ms`, in time order, letting the node's loop settle between them. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await this.runDue(end, true);
    this.t = end;
  }
  /** The process is not running for `ms` (a GC pause): then every overdue timer fires, late. */
  async stall(ms: number): Promise<void> {
    this.t += ms;
    await this.runDue(this.t, false);
  }
  private async runDue(until: number, onTime: boolean): Promise<void> {
    for (;;) {
      const next = [...this.timers.entries()].filter(([, x]) => x.at <= until).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      this.timers.delete(next[0]);
      if (onTime) this.t = next[1].at;
      next[1].fn();
      for (let i = 0; i < 20; i++) await Promise.resolve();
    }
  }
}

const quietTransport: Transport = { send() {}, listen() {}, close() {} };

test('a leader keeps no election timer: only its heartbeat and quorum-check timers stay armed', async (t) => {
  const clock = new ManualClock();
  const node = await RaftNode.start({
    id: 'n1', bootstrap: { voters: ['n1'], learners: [] },
    storage: new DiskRaftStorage({ fs: new SimFileSystem(), dir: '/data/n1' }),
    stateMachine: new KvStateMachine(), transport: quietTransport, clock, random: () => 0.5,
  });
  t.is(clock.timers.size, 1, 'a follower arms its election timer');
  await clock.advance(1000);
  t.is(node.status().role, 'leader');
  t.is(clock.timers.size, 2, 'heartbeat and CheckQuorum only');
  await clock.advance(5_000);
  t.is(node.status().role, 'leader');
  t.is(clock.timers.size, 2);
  await node.stop();
});

/** n1 of three, hearing nobody, election timeout 400-800 ms landing at 600 ms; what it sends is kept. */
async function lonelyFollower() {
  const clock = new ManualClock();
  const sent: RaftMessage[] = [];
  const node = await RaftNode.start({
    id: 'n1', bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] },
    storage: new DiskRaftStorage({ fs: new SimFileSystem(), dir: '/data/n1' }),
    stateMachine: new KvStateMachine(), transport: { send: (m) => void sent.push(m), listen() {}, close() {} }, clock, random: () => 0.5,
  });
  return { clock, sent, node };
}

test('a follower whose own process stalled past its election timeout waits two heartbeats before campaigning', async (t) => {
  // Heartbeats that arrived during the stall are still unread when the overdue timer fires; a
  // whole host pausing (seen under sustained load here) made every follower campaign at once.
  const { clock, sent, node } = await lonelyFollower();
  const votes = () => sent.filter((m) => m.type === 'vote').length;
  await clock.advance(100); // the timeout falls due at 600 ms
  t.is(votes(), 0);
  await clock.stall(800); // fires 300 ms late
  t.is(votes(), 0, 'no campaign straight out of its own stall');
  t.is(node.stallGraces, 1);
  await clock.advance(99);
  t.is(votes(), 0);
  await clock.advance(2);
  t.true(votes() > 0, 'still silent two heartbeats later: it campaigns (PreVote)');
  await node.stop();
});

test('an election timeout that fires on time is acted on at once', async (t) => {
  const { clock, sent, node } = await lonelyFollower();
  await clock.advance(599);
  t.is(sent.filter((m) => m.type === 'vote').length, 0);
  await clock.advance(1);
  t.true(sent.filter((m) => m.type === 'vote').length > 0);
  t.is(node.stallGraces, 0);
  await node.stop();
});
