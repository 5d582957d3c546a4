import { simSeeds } from './helpers/sim-seeds.ts';

simSeeds(1001, 1000);
