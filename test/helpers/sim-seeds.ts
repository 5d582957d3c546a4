import test from 'ava';
import { runSimulation } from '../../src/sim/sim.ts';

/** Register ava tests that run seeds [from, from+count) of the simulator in chunks. */
export function simSeeds(from: number, count: number, chunk = 100): void {
  for (let start = from; start < from + count; start += chunk) {
    const end = Math.min(start + chunk, from + count) - 1;
    test.serial(`simulator seeds ${start}-${end}`, async (t) => {
      const failures: string[] = [];
      for (let seed = start; seed <= end; seed++) {
        const r = await runSimulation({ seed });
        if (!r.ok) failures.push(`seed ${seed}: ${r.error} (replay: npm run sim -- --seed ${seed} --trace)`);
      }
      t.deepEqual(failures, []);
    });
  }
}
