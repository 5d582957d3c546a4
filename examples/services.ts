/**
 * Monitor + discovery + events: an "interpreter process" registers and heartbeats, a server finds
 * it, and two servers exchange cluster events (fast and durable).
 */
import { ClusterEvents, CLUSTER_INTP_EVENT_TOPIC } from '../actors/events.ts';
import { Discovery } from '../actors/discovery.ts';
import { HeartbeatSender } from '../actors/heartbeat.ts';
import { connectLocal } from './connect.ts';

const intpClient = await connectLocal();
const serverClient = await connectLocal();

// The interpreter process registers (meta/intp/<group>) and heartbeats every second.
const heartbeat = await HeartbeatSender.start({
  writer: intpClient,
  identity: { kind: 'interpreter', groupId: 'python-shared', host: '127.0.0.1', port: 45678, nodeName: '127.0.0.1:8080' },
  heartbeatIntervalMs: 1000,
});

// A server discovers it (local cache kept current by a watch).
const discovery = await Discovery.start({ client: serverClient });
const found = await discovery.waitFor('python-shared', 10_000);
console.log('interpreter python-shared is', found.status, 'at', `${found.host}:${found.port}`);
console.log('idlest server:', (await discovery.idlestServer())?.name ?? '(no server heartbeats yet)');

// Cluster events between two servers.
const [clientA, clientB] = [await connectLocal(), await connectLocal()];
const a = await ClusterEvents.start({ client: clientA, memberId: 'server-a' });
const b = await ClusterEvents.start({ client: clientB, memberId: 'server-b' });
const got: string[] = [];
b.on(CLUSTER_INTP_EVENT_TOPIC, (msg, m) => void got.push(`${m.mode} from ${m.from}: ${JSON.stringify(msg)}`));
await b.ready();
await a.broadcast(CLUSTER_INTP_EVENT_TOPIC, { op: 'restarted', group: 'python-shared' });
await a.broadcast(CLUSTER_INTP_EVENT_TOPIC, { op: 'settings changed' }, { mode: 'durable' });
const ack = await a.unicast('server-b', CLUSTER_INTP_EVENT_TOPIC, { op: 'start interpreter', group: 'r' });
console.log('unicast acknowledged by', ack.listeners, 'listener(s)');
while (got.length < 3) await new Promise((r) => setTimeout(r, 20));
console.log(got.join('\n'));
const dead = await a.unicast('server-z', CLUSTER_INTP_EVENT_TOPIC, {}, { timeoutMs: 500 }).catch((e: Error) => e);
console.log('unicast to a member that is not there:', (dead as Error).message);

await heartbeat.stop({ deregister: true });
await Promise.all([a.close(), b.close(), discovery.close()]);
await Promise.all([intpClient, serverClient, clientA, clientB].map((c) => c.close()));
