import { simSeeds } from './helpers/sim-seeds.ts';

// Half of the simulator seeds run in CI; ava runs this file and sim-seeds-b in parallel.
simSeeds(1, 1000);
