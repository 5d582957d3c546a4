import { runSimulation } from './sim/sim.ts';

/**
 * submarine-cluster CLI. For now (until the NATS cluster lands) `demo` runs the deterministic
 * simulator: a Raft cluster under faults, printing a readable trace and the checks' verdict.
 */
async function main(): Promise<void> {
  const [cmd = 'demo', ...rest] = process.argv.slice(2);
  if (cmd === 'demo') {
    const i = rest.indexOf('--seed');
    const seed = i >= 0 ? Number(rest[i + 1]) : 1;
    console.log(`submarine-cluster demo: simulated 3-5 member Raft cluster under faults (seed ${seed}).`);
    console.log('The NATS-backed multi-process cluster and its dashboard are not built yet; this runs the simulator.\n');
    const r = await runSimulation({ seed, trace: (l) => console.log(l) });
    console.log(`\n${r.ok ? 'all invariants held' : `FAILED: ${r.error}`}`);
    console.log(JSON.stringify(r));
    process.exitCode = r.ok ? 0 : 1;
    return;
  }
  console.error(`unknown command '${cmd}'. Commands: demo [--seed N]`);
  process.exitCode = 2;
}

void main();
