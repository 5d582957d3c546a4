import test from 'ava';
import { createRaftState } from '../src/raft/state.ts';
import { runSimulation, type SimControl } from '../src/sim/sim.ts';

/** Poll a condition in virtual time. */
async function until(c: SimControl, what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = c.now + timeoutMs;
  while (!cond()) {
    if (c.now >= deadline) throw new Error(`timed out waiting for ${what}`);
    await c.sleep(10);
  }
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

// ---- random seeds: single-server membership changes while faults happen ----

// 600 seeds take ~20-35 s on one core (18-28 seeds/s); chunks keep each test's output short.
const FROM = 1;
const COUNT = 600;
const CHUNK = 100;
for (let start = FROM; start < FROM + COUNT; start += CHUNK) {
  const end = Math.min(start + CHUNK, FROM + COUNT) - 1;
  test.serial(`membership seeds ${start}-${end}: no invariant violation`, async (t) => {
    const failures: string[] = [];
    let changes = 0;
    for (let seed = start; seed <= end; seed++) {
      const r = await runSimulation({ seed, membership: true });
      changes += r.membershipChanges;
      if (!r.ok) failures.push(`seed ${seed}: ${r.error} (replay: npm run sim -- --seed ${seed} --membership --trace)`);
    }
    if (failures.length) t.log(failures.join('\n'));
    t.deepEqual(failures, []);
    // The schedule really changes the membership (several committed changes per seed on average).
    t.true(changes > 2 * (end - start + 1), `only ${changes} membership changes committed`);
  });
}

// ---- deterministic scenarios ----

test.serial('3 nodes: add n4 as learner, promote it, remove the leader; a new leader among the rest, equal applied logs', async (t) => {
  const seen: { first?: string; removed?: string; next?: string; rest?: string[]; digests?: string[]; removedRole?: string; removedConf?: string[] } = {};
  const r = await runSimulation({
    seed: 7,
    nodes: 3,
    clients: 2,
    script: async (c) => {
      seen.first = await c.waitForLeader();
      for (let i = 0; i < 10; i++) await c.put('k', `v${i}`);
      const n4 = await c.addNode();
      t.is(n4, 'n4');
      await c.changeMembership({ op: 'addLearner', node: n4 });
      t.deepEqual(c.node(c.leader()!)!.status().conf.learners, ['n4']);
      // Promotion is refused until the learner caught up; changeMembership retries.
      await c.changeMembership({ op: 'promote', node: n4 });
      t.deepEqual(sorted(c.node(c.leader()!)!.status().conf.voters), ['n1', 'n2', 'n3', 'n4']);
      const old = c.leader()!;
      seen.removed = old;
      await c.changeMembership({ op: 'remove', node: old });
      const rest = ['n1', 'n2', 'n3', 'n4'].filter((x) => x !== old);
      seen.rest = rest;
      seen.next = await c.waitForLeader(5000, rest);
      await c.put('after', 'removal');
      const leader = c.node(seen.next)!;
      const commit = leader.status().commitIndex;
      await until(c, 'the rest to apply everything', () => rest.every((id) => c.node(id)!.status().appliedIndex >= commit));
      await c.sleep(500);
      // The clients keep writing and followers learn a commit up to commitFlushDelayMs after the
      // leader: compare the state machines at one applied index.
      await until(c, 'the rest at one applied index', () => new Set(rest.map((id) => c.node(id)!.status().appliedIndex)).size === 1);
      seen.digests = rest.map((id) => c.sm(id)!.appliedDigest());
      seen.removedRole = c.node(old)!.status().role;
      seen.removedConf = c.node(old)!.status().conf.voters;
    },
  });
  t.true(r.ok, r.error);
  t.truthy(seen.next);
  t.not(seen.next, seen.removed);
  t.true(seen.rest!.includes(seen.next!));
  t.is(new Set(seen.digests).size, 1, 'the remaining members applied the same log');
  t.is(seen.removedRole, 'follower', 'the removed leader stepped down');
  t.false(seen.removedConf!.includes(seen.removed!), 'the removed leader knows it was removed');
  t.deepEqual(sorted(r.finalConf!.voters), sorted(seen.rest!));
  t.true(seen.rest!.includes(r.finalLeader!));
});

test.serial('a removed node cut off from the cluster campaigns after rejoining but does not depose the leader', async (t) => {
  const seen: { leader?: string; victim?: string; term?: number; after?: { leader: string | null; term: number }; campaigns?: number } = {};
  const r = await runSimulation({
    seed: 11,
    nodes: 3,
    clients: 1,
    script: async (c) => {
      const leader = await c.waitForLeader();
      const victim = c.ids().find((x) => x !== leader)!;
      const others = c.ids().filter((x) => x !== victim);
      Object.assign(seen, { leader, victim });
      c.partition([victim], others);
      await c.changeMembership({ op: 'remove', node: victim });
      await c.sleep(1500); // the victim times out and pre-campaigns in isolation
      seen.term = c.node(leader)!.status().term;
      seen.campaigns = 0;
      c.watch((m) => void (m.from === victim && m.type === 'vote' && seen.campaigns!++));
      c.heal();
      await c.sleep(3000);
      seen.after = { leader: c.leader(), term: c.node(leader)!.status().term };
    },
  });
  t.true(r.ok, r.error);
  t.true(seen.campaigns! > 0, 'the removed node sent (Pre)Vote requests after the heal');
  t.deepEqual(seen.after, { leader: seen.leader!, term: seen.term! }, 'same leader, same term');
  t.false(r.finalConf!.voters.includes(seen.victim!));
});

test.serial('a leader that removes itself and loses its quorum before committing: the cluster still elects a leader', async (t) => {
  // Regression: the removed leader is the only holder of its removal entry; the other voter, still
  // on the old configuration {L, O}, can only win with L's vote, which L denies (its log is longer).
  // L must be allowed to campaign for the new configuration {O}, commit the removal and step down.
  const seen: { l?: string; o?: string; stepped?: boolean } = {};
  const r = await runSimulation({
    seed: 3,
    nodes: 3,
    clients: 1,
    script: async (c) => {
      const l = await c.waitForLeader();
      const [x, o] = c.ids().filter((id) => id !== l) as [string, string];
      await c.changeMembership({ op: 'remove', node: x });
      Object.assign(seen, { l, o });
      c.partition([l], [o, x]);
      void c.node(l)!.changeMembership({ op: 'remove', node: l }).catch(() => undefined);
      await until(c, 'the removed leader to step down (CheckQuorum)', () => c.node(l)!.status().role !== 'leader', 2000);
      seen.stepped = true;
      await c.sleep(500);
      c.heal();
      await until(c, `${o} to lead alone`, () => c.leader() === o && c.node(o)!.status().conf.voters.length === 1, 5000);
    },
  });
  t.true(r.ok, r.error);
  t.true(seen.stepped);
  t.deepEqual(r.finalConf?.voters, [seen.o]);
  t.is(r.finalLeader, seen.o!);
});

test.serial('a node restarted after the configuration entries were compacted keeps the current configuration', async (t) => {
  // Regression: on restart the configuration came from the bootstrap list instead of the snapshot.
  let confAfterRestart: string[] = [];
  const r = await runSimulation({
    seed: 5,
    nodes: 3,
    clients: 0,
    script: async (c) => {
      await c.waitForLeader();
      const n4 = await c.addNode();
      await c.changeMembership({ op: 'addLearner', node: n4 });
      await c.changeMembership({ op: 'promote', node: n4 });
      await c.changeMembership({ op: 'remove', node: 'n1' });
      // Snapshots are taken every 40 applied entries: push the conf entries into a snapshot.
      for (let i = 0; i < 100; i++) await c.put('k', `v${i}`);
      const target = c.ids().find((id) => id !== 'n1' && id !== c.leader())!;
      await until(c, `${target} to compact past the conf entries`, () => c.node(target)!.state.log.snapshotIndex > c.node(target)!.state.confIndex);
      c.crash(target);
      await c.sleep(100);
      await c.restart(target);
      confAfterRestart = c.node(target)!.status().conf.voters;
    },
  });
  t.true(r.ok, r.error);
  t.deepEqual(sorted(confAfterRestart), ['n2', 'n3', 'n4']);
});

test('createRaftState takes the configuration from the snapshot, not the bootstrap list', (t) => {
  const s = createRaftState({
    id: 'n2',
    bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] },
    hardState: { term: 3, vote: null, commit: 50 },
    snapshot: { meta: { index: 50, term: 3, conf: { voters: ['n2', 'n3', 'n4'], learners: ['n5'] } }, data: [] },
    entries: [],
  });
  t.deepEqual(s.conf, { voters: ['n2', 'n3', 'n4'], learners: ['n5'] });
});

test.serial('a learner added to an idle cluster catches up without further writes', async (t) => {
  // Regression: the learner's progress starts optimistic (next = last + 1, match 0); heartbeats
  // anchored at match succeed, and with nothing new to send no probe at next - 1 was ever sent.
  const seen: { caughtUp?: boolean; commit?: number; applied?: number } = {};
  const r = await runSimulation({
    seed: 7,
    nodes: 3,
    clients: 0,
    script: async (c) => {
      await c.waitForLeader();
      for (let i = 0; i < 3; i++) await c.put('k', `v${i}`);
      const n4 = await c.addNode();
      await c.changeMembership({ op: 'addLearner', node: n4 });
      await c.sleep(2000); // idle: no client writes at all
      const leader = c.node(c.leader()!)!;
      seen.commit = leader.status().commitIndex;
      seen.applied = c.node(n4)!.status().appliedIndex;
    },
  });
  t.true(r.ok, r.error);
  t.is(seen.applied, seen.commit, 'the idle learner received the log');
});
