/**
 * Starts a loopback NATS broker cluster and keeps it up until SIGINT/SIGTERM.
 *
 *   tsx scripts/nats-cluster.ts [--dir DIR] [--size 3]
 *
 * Credentials live in DIR/credentials.json (created on first use); server logs in DIR.
 * Prints one JSON line on stdout once every server is up and routed:
 *   {"urls":[...],"servers":[{"name","pid","url"}...],"dir","credentialsFile"}
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startNatsCluster } from '../src/nats/broker.ts';
import { loadOrCreateCredentials } from '../src/nats/credentials.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: 'data/nats' },
    size: { type: 'string', default: '3' },
  },
});
const dir = resolve(values.dir);
const size = Number(values.size);
if (!Number.isInteger(size) || size < 1) {
  console.error(`--size must be a positive integer, got ${values.size}`);
  process.exit(2);
}

const logger = {
  info: (obj: object, msg: string) => console.error(`[nats-cluster] ${msg} ${JSON.stringify(obj)}`),
  warn: (obj: object, msg: string) => console.error(`[nats-cluster] WARN ${msg} ${JSON.stringify(obj)}`),
};

const credentialsFile = join(dir, 'credentials.json');
const credentials = loadOrCreateCredentials(credentialsFile);
const cluster = await startNatsCluster({ dir, size, credentials, logger });

let stopping = false;
const shutdown = (signal: NodeJS.Signals) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  cluster.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

console.log(
  JSON.stringify({
    urls: cluster.urls,
    servers: cluster.servers.map((s) => ({ name: s.name, pid: s.pid, url: s.url })),
    dir,
    credentialsFile,
  }),
);
