/**
 * Entry of the member bundle (src/member-bundle.ts): `node .build/member-<hash>.mjs ARGS` runs
 * what `submarine-cluster node ARGS` runs, without the TypeScript loader in the process.
 */
import { ConfigError } from './config.ts';
import { runNode } from './member-main.ts';

runNode(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    const e = err as Error;
    console.error(`submarine-cluster node: ${e.name}: ${e.message}`);
    process.exit(e instanceof ConfigError ? 2 : 1);
  },
);
