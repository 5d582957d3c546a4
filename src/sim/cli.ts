import type { RaftConfig } from '../raft/state.ts';
import { runSimulation, type SimResult } from './sim.ts';

/**
 * npm run sim -- --seeds 1000 [--from 1]      run many seeds, print a JSON summary
 * npm run sim -- --seed 42 --trace             replay one seed with a readable trace
 * add --membership to also change the membership (add learner, promote, remove, re-add) during faults
 * add --disk-faults to also fail disks (ENOSPC/EIO for a while: the node halts, restarts from what was synced)
 * add --mutate NAME to break one Raft rule on purpose
 */
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const has = (name: string) => process.argv.includes(`--${name}`);

/** --mutate NAME breaks one Raft rule on purpose, to show the simulator catches it. */
const MUTATIONS: Record<string, RaftConfig['unsafe']> = {
  commitPreviousTerm: { commitPreviousTermByCounting: true },
  secondVote: { grantSecondVote: true },
  noLease: { skipLeaseCheck: true },
  noUpToDateCheck: { skipUpToDateCheck: true },
  commitPreviousTermNoNoop: { commitPreviousTermByCounting: true, noNoopAtTermStart: true },
  ackBeforePersist: { ackBeforePersist: true },
};
const mutation = arg('mutate');
if (mutation && !MUTATIONS[mutation]) {
  console.error(`unknown mutation ${mutation}; one of ${Object.keys(MUTATIONS).join(', ')}`);
  process.exit(2);
}
const raft = mutation ? { unsafe: MUTATIONS[mutation] } : undefined;
const membership = has('membership');
const diskFaults = has('disk-faults');

async function main(): Promise<void> {
  const one = arg('seed');
  if (one !== undefined) {
    const r = await runSimulation({ seed: Number(one), raft, membership, diskFaults, trace: has('trace') ? (l) => console.log(l) : undefined });
    console.log(JSON.stringify(r));
    process.exitCode = r.ok ? 0 : 1;
    return;
  }
  const count = Number(arg('seeds') ?? 100);
  const from = Number(arg('from') ?? 1);
  const started = performance.now();
  const failures: SimResult[] = [];
  let events = 0;
  let changes = 0;
  for (let seed = from; seed < from + count; seed++) {
    const r = await runSimulation({ seed, raft, membership, diskFaults });
    events += r.events;
    changes += r.membershipChanges;
    if (!r.ok) {
      failures.push(r);
      const flags = `${membership ? ' --membership' : ''}${mutation ? ` --mutate ${mutation}` : ''}`;
      console.error(`seed ${seed} FAILED: ${r.error}  (replay: npm run sim -- --seed ${seed}${flags} --trace)`);
    }
    if ((seed - from + 1) % 500 === 0) console.error(`${seed - from + 1}/${count} seeds`);
  }
  const secs = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ seeds: count, failed: failures.length, seconds: +secs.toFixed(1), seedsPerSecond: +(count / secs).toFixed(1), events, ...(membership ? { membershipChanges: changes } : {}) }));
  process.exitCode = failures.length ? 1 : 0;
}

void main();
