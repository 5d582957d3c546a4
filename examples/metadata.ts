/** Metadata center: KV with revisions, cas, typed server metadata, a watch, a lease. */
import { ClusterMeta } from '../src/index.ts';
import { connectLocal } from './connect.ts';

const client = await connectLocal();
const r = await client.put('example/greeting', 'hello');
console.log('put at revision', r.revision);
console.log('linearizable get:', (await client.get('example/greeting')).kv?.value);
const stale = await client.get('example/greeting', { consistency: 'stale' });
console.log('stale get from', stale.member, 'at revision', stale.revision);
// Compare-and-set on the revision we read.
await client.put('example/greeting', 'hello again', { expectedRevision: r.revision });

// The original's typed metadata: a put merges fields; get('') lists the type.
const meta = new ClusterMeta(client);
await meta.put('server', '127.0.0.1:8080', { SERVER_HOST: '127.0.0.1', SERVER_PORT: 8080, STATUS: 'ONLINE' });
await meta.put('server', '127.0.0.1:8080', { MEMORY_USED: 1 << 30 });
console.log('servers:', Object.fromEntries(await meta.get('server')));

// Every committed change under a prefix, in order, from now on.
const seen: string[] = [];
const watcher = await client.watch('example/', { onEvent: (ev) => seen.push(`${ev.type} ${ev.kv.key}`) });
await client.put('example/watched', 1);
await client.delete('example/watched');
// A leased key disappears (through the log) once its holder stops keeping it alive.
const lease = await client.leaseGrant(2000);
await client.put('example/ephemeral', 'here while alive', { lease });
await client.leaseRevoke(lease);
while (seen.length < 3) await new Promise((r) => setTimeout(r, 20));
console.log('watch saw:', seen);
await watcher.close();
await meta.delete('server', '127.0.0.1:8080');
await client.close();
