/**
 * Issue 19 (first step): a storage write that fails (a full disk, an I/O error) halts the Raft
 * node, which then acknowledges nothing and never reports itself as leader; onFatal tells the
 * member process, which exits for its supervisor (fail-stop) instead of staying up as a zombie.
 */
import test from 'ava';
import { RaftNode } from '../actors/node.ts';
import { realClock, type Transport } from '../actors/ports.ts';
import { KvStateMachine, encodeKvCommand } from '../src/sm/kv.ts';
import { DiskRaftStorage } from '../src/storage/raft-storage.ts';
import { SimFileSystem } from '../src/storage/sim-fs.ts';

const quiet: Transport = { send() {}, listen() {}, close() {} };

for (const code of ['ENOSPC', 'EIO'] as const) {
  test(`${code} in the WAL halts the node: the write is not acknowledged, status is no longer leader, onFatal fires once`, async (t) => {
    const sim = new SimFileSystem();
    const node = await RaftNode.start({
      id: 'n1', bootstrap: { voters: ['n1'], learners: [] }, storage: new DiskRaftStorage({ fs: sim.session(), dir: '/data/n1' }),
      stateMachine: new KvStateMachine(), transport: quiet, clock: realClock, random: () => 0.5, electionTimeoutMs: { min: 20, max: 40 },
    });
    t.teardown(() => node.halt());
    await new Promise<void>((resolve) => {
      const off = node.onChange((n) => n.isLeader && (off(), resolve()));
    });
    await node.propose(encodeKvCommand({ op: 'put', key: 'a', value: '1' }));
    const fatal: Error[] = [];
    node.onFatal((err) => fatal.push(err));
    sim.writeFault = code;
    await t.throwsAsync(node.propose(encodeKvCommand({ op: 'put', key: 'b', value: '2' })), { name: 'NodeStoppedError' });
    t.is(fatal.length, 1);
    t.is((fatal[0] as NodeJS.ErrnoException).code, code);
    const st = node.status();
    t.is(st.role, 'follower', 'a halted node is never reported as leader');
    t.is(st.leader, null);
    t.regex(st.fatal ?? '', new RegExp(code));
    t.false(node.isLeader);
    await t.throwsAsync(node.propose(encodeKvCommand({ op: 'put', key: 'c', value: '3' })), { name: 'NodeStoppedError' });
    t.is(fatal.length, 1, 'reported once');
  });
}
