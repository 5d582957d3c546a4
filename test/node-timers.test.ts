import test from 'ava';
import { RaftNode } from '../actors/node.ts';
import type { Clock, Transport } from '../actors/ports.ts';
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
    for (;;) {
      const next = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      for (let i = 0; i < 20; i++) await Promise.resolve();
    }
    this.t = end;
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
  await clock.advance(400);
  t.is(node.status().role, 'leader');
  t.is(clock.timers.size, 2, 'heartbeat and CheckQuorum only');
  await clock.advance(5_000);
  t.is(node.status().role, 'leader');
  t.is(clock.timers.size, 2);
  await node.stop();
});
