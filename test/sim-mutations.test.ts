import test from 'ava';
import type { RaftConfig } from '../src/raft/state.ts';
import { CoreCluster } from '../src/sim/core-harness.ts';
import { runSimulation, type SimResult } from '../src/sim/sim.ts';
import { encodeKvCommand } from '../src/sm/kv.ts';

/**
 * Each mutation (RaftConfig.unsafe) breaks one Raft rule. These tests show the checks catch it:
 * every test asserts that a violation IS reported under the mutation (and none without it), so a
 * checker that stopped checking would fail them.
 */
type Unsafe = NonNullable<RaftConfig['unsafe']>;

const safetyViolation = (r: SimResult): boolean => !r.ok && /^InvariantViolation: (?!liveness)/.test(r.error ?? '');

/**
 * Scan seeds from..to (stopping once `want` are caught) for runs where the mutation makes a safety
 * check fail; then replay the caught seeds without the mutation: they must pass.
 */
async function caughtSeeds(unsafe: Unsafe, opts: { from: number; to: number; want: number; membership?: boolean }) {
  const caught: { seed: number; error: string }[] = [];
  for (let seed = opts.from; seed <= opts.to && caught.length < opts.want; seed++) {
    const r = await runSimulation({ seed, membership: opts.membership, raft: { unsafe } });
    if (safetyViolation(r)) caught.push({ seed, error: r.error! });
  }
  const cleanFailures: string[] = [];
  for (const { seed } of caught) {
    const r = await runSimulation({ seed, membership: opts.membership });
    if (!r.ok) cleanFailures.push(`seed ${seed}: ${r.error}`);
  }
  return { caught, cleanFailures };
}

// ---- grantSecondVote: election safety ----

test.serial('secondVote: random seeds (membership changes) catch two leaders / a leader without a majority', async (t) => {
  // Measured: seeds 14, 20 of 1..20 with --membership (before the commit flush timer).
  const { caught, cleanFailures } = await caughtSeeds({ grantSecondVote: true }, { from: 1, to: 300, want: 2, membership: true });
  t.log(caught.map((c) => `seed ${c.seed}: ${c.error}`).join('\n'));
  t.is(caught.length, 2);
  for (const c of caught) t.regex(c.error, /election/);
  t.deepEqual(cleanFailures, []);
});

test.serial('secondVote: known seeds of the plain schedule', async (t) => {
  // Measured: seeds 27, 52, 83, 256, 262 of 1..300 (the schedule depends on every timer the nodes arm).
  for (const seed of [52, 256]) {
    const bad = await runSimulation({ seed, raft: { unsafe: { grantSecondVote: true } } });
    t.true(safetyViolation(bad), `seed ${seed}: ${bad.error ?? 'no violation'}`);
    t.regex(bad.error ?? '', /election/);
    const good = await runSimulation({ seed });
    t.true(good.ok, `seed ${seed} without the mutation: ${good.error}`);
  }
});

// ---- skipUpToDateCheck: leader completeness ----

test.serial('noUpToDateCheck: random seeds catch a leader missing committed entries', async (t) => {
  // Measured: 10/100 plain seeds (18, 30, 40, ...); 91/200 with --membership, where new empty
  // nodes hand their votes to stale candidates.
  const plain = await caughtSeeds({ skipUpToDateCheck: true }, { from: 1, to: 80, want: 2 });
  const membership = await caughtSeeds({ skipUpToDateCheck: true }, { from: 1, to: 40, want: 3, membership: true });
  t.log([...plain.caught, ...membership.caught].map((c) => `seed ${c.seed}: ${c.error}`).join('\n'));
  t.is(plain.caught.length, 2);
  t.is(membership.caught.length, 3);
  for (const c of [...plain.caught, ...membership.caught]) t.regex(c.error, /leader completeness|state machine safety|committed entry|commit:/);
  t.deepEqual([...plain.cleanFailures, ...membership.cleanFailures], []);
});

// ---- commitPreviousTermByCounting (+ noNoopAtTermStart): Figure 8 ----

const cmd = (v: string) => encodeKvCommand({ op: 'put', key: 'k', value: v });

/**
 * The Raft paper's Figure 8 on five servers, driven step by step over the pure core:
 * (a) s1 leads, appends X and replicates it to s2 only, then crashes;
 * (b) s5 is elected by s3, s4 (and itself), appends Y at the same index locally, crashes;
 * (c) s1 restarts, is elected by s2, s3 and replicates X to them: X is on a majority, but of an
 *     older term;
 * (d) s1 crashes; s5 restarts and campaigns with s2, s3, s4 (its last term beats X's).
 * Correct code: s1's term-start no-op travels with X and is what commits it, so s5 cannot win (d).
 * With both mutations: s1 commits X by counting replicas and applies it; s5 wins (d) and Y
 * replaces X: leader completeness and state machine safety are violated.
 */
function figure8(unsafe?: Unsafe) {
  const ids = ['s1', 's2', 's3', 's4', 's5'];
  const c = new CoreCluster(ids, unsafe ? { unsafe } : {});
  const steps: Record<string, boolean> = {};
  steps.s1Elected = c.elect('s1', ids);
  c.deliver();
  c.propose('s1', cmd('c0'));
  c.deliver();
  c.heartbeat('s1');
  c.deliver();
  // (a)
  c.propose('s1', cmd('X'));
  const xIndex = c.state('s1').log.entries.at(-1)!.index;
  c.deliver((m) => (m.from === 's1' && m.to === 's2') || (m.from === 's2' && m.to === 's1'));
  c.crash('s1');
  // (b)
  steps.s5ElectedB = c.elect('s5', ['s3', 's4']);
  c.propose('s5', cmd('Y'));
  c.crash('s5');
  // (c)
  c.restart('s1');
  steps.s1ElectedC = c.elect('s1', ['s2', 's3']);
  c.deliverWithin(['s1', 's2', 's3']);
  c.heartbeat('s1');
  c.deliverWithin(['s1', 's2', 's3']);
  steps.xAppliedByS1 = c.node('s1').applied.some((e) => e.index === xIndex);
  c.crash('s1');
  // (d)
  c.restart('s5');
  steps.s5ElectedD = c.elect('s5', ['s2', 's3', 's4']);
  c.settle();
  const applied = ids.map((id) => c.node(id).applied.map((e) => `${e.index}/${e.term}`).join(' '));
  return { c, steps, applied };
}

test('Figure 8: commitPreviousTermByCounting + noNoopAtTermStart overwrite a committed entry, and the checker flags it', (t) => {
  const { c, steps } = figure8({ commitPreviousTermByCounting: true, noNoopAtTermStart: true });
  t.log(c.violations.join('\n'));
  t.like(steps, { s1Elected: true, s5ElectedB: true, s1ElectedC: true, xAppliedByS1: true, s5ElectedD: true });
  t.true(c.violations.some((v) => /leader completeness: leader s5/.test(v)), c.violations.join('\n'));
  t.true(c.violations.some((v) => /state machine safety/.test(v)), c.violations.join('\n'));
});

test('Figure 8: the correct rules commit X only through the new term and s5 cannot be elected', (t) => {
  const { c, steps, applied } = figure8();
  t.deepEqual(c.violations, []);
  t.like(steps, { s1Elected: true, s5ElectedB: true, s1ElectedC: true, xAppliedByS1: true, s5ElectedD: false });
  t.is(new Set(applied).size, 1, 'everyone applied the same log after settling');
});

test('Figure 8: each mutation alone is harmless here (the no-op masks counting; without counting X is not committed)', (t) => {
  const counting = figure8({ commitPreviousTermByCounting: true });
  t.deepEqual(counting.c.violations, []);
  t.false(counting.steps.s5ElectedD);
  const noNoop = figure8({ noNoopAtTermStart: true });
  t.deepEqual(noNoop.c.violations, []);
  t.false(noNoop.steps.xAppliedByS1, 'X is of an older term: not committed by counting');
  t.true(noNoop.steps.s5ElectedD, 'so s5 may legitimately replace it');
});

// ---- skipLeaseCheck: disruption by a rejoining node ----

/**
 * An idle 3-node cluster; a follower is cut off for 1.5 s (PreVote keeps its term), then rejoins,
 * first only in its outgoing direction for 0.5 s (the leader's heartbeats do not reach it yet), then
 * fully. Its log is as long as everyone's, so only the leader lease stops its PreVote/Vote from
 * deposing the stable leader.
 */
async function rejoin(seed: number, unsafe?: Unsafe) {
  const seen = { leader: '', victim: '', term: 0, leaderChanges: 0, after: '' as string | null, maxTerm: 0 };
  const r = await runSimulation({
    seed,
    nodes: 3,
    clients: 0,
    raft: unsafe ? { unsafe } : undefined,
    script: async (c) => {
      seen.leader = await c.waitForLeader();
      await c.sleep(500);
      seen.victim = c.ids().find((x) => x !== seen.leader)!;
      c.partition([seen.victim], c.ids().filter((x) => x !== seen.victim));
      await c.sleep(1500);
      seen.term = c.node(seen.leader)!.status().term;
      let current = c.leader();
      c.heal();
      c.cutLink(seen.leader, seen.victim);
      for (let i = 0; i < 300; i++) {
        if (i === 50) c.heal();
        await c.sleep(10);
        const l = c.leader();
        if (l !== current) {
          if (l !== null) seen.leaderChanges++;
          current = l;
        }
      }
      seen.after = c.leader();
      seen.maxTerm = Math.max(...c.ids().map((id) => c.node(id)!.status().term));
    },
  });
  return { r, seen };
}

test.serial('noLease: a rejoining node deposes a stable leader only with the mutation', async (t) => {
  for (const seed of [1, 2, 3]) {
    const good = await rejoin(seed);
    t.true(good.r.ok, good.r.error);
    t.is(good.seen.leaderChanges, 0, `seed ${seed}: no leader change with the lease`);
    t.is(good.seen.maxTerm, good.seen.term, `seed ${seed}: no term change with the lease`);
    t.is(good.seen.after, good.seen.leader);

    const bad = await rejoin(seed, { skipLeaseCheck: true });
    t.true(bad.r.ok, bad.r.error); // still safe: only availability suffers
    t.true(bad.seen.leaderChanges >= 1, `seed ${seed}: the leader was deposed without the lease`);
    t.true(bad.seen.maxTerm > bad.seen.term, `seed ${seed}: the term moved without the lease`);
  }
});

// ---- ackBeforePersist: an acknowledgement must follow the fsync it depends on ----

test.serial('ackBeforePersist: a follower that acks before its fsync and then crashes loses a committed entry', async (t) => {
  // Leader L and follower F1 (slow disk) commit x while F2 is cut off; L and F1 crash at once.
  // F1 and F2 then elect a leader. With acks after the fsync F1 kept x and no leader lacks it;
  // with acks before it, F1's unsynced copy is gone and the new leader lacks a committed entry.
  const scenario = (unsafe: Unsafe | undefined, seed: number) =>
    runSimulation({
      seed, nodes: 3, clients: 0, raft: unsafe ? { unsafe } : undefined,
      script: async (c) => {
        const leader = await c.waitForLeader();
        const [f1, f2] = c.ids().filter((id) => id !== leader) as [string, string];
        c.partition([f2], [leader, f1]);
        c.slowDisk(f1, true);
        await c.put('x', '1');
        c.crash(leader);
        c.crash(f1);
        c.heal();
        c.slowDisk(f1, false);
        await c.restart(f1);
        await c.waitForLeader(5000, [f1, f2]);
        await c.restart(leader);
      },
    });
  const caught: number[] = [];
  for (let seed = 1; seed <= 5; seed++) {
    const good = await scenario(undefined, seed);
    t.true(good.ok, `seed ${seed} without the mutation: ${good.error}`);
    const bad = await scenario({ ackBeforePersist: true }, seed);
    if (safetyViolation(bad)) caught.push(seed);
  }
  t.log(`caught on seeds ${caught.join(', ')}`);
  t.true(caught.length >= 3, `caught on ${caught.length} of 5 seeds`);
});
