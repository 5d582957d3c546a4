/**
 * Integration: monitor, discovery and placement on a real cluster (3 member processes over NATS,
 * started with a 300 ms heartbeat interval, 1000 ms timeout, 2000 ms OFFLINE retention).
 * Interpreter processes are child processes (test/fixtures/interpreter-process.ts); servers are
 * heartbeat senders in this process with fixed memory figures. The tests run in order on one cluster.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { Discovery, type ServiceChange } from '../actors/discovery.ts';
import { HeartbeatSender } from '../actors/heartbeat.ts';
import { placeInterpreter, PlacementError } from '../actors/placement.ts';
import { ClusterClient } from '../src/client.ts';
import { TimeoutError } from '../src/errors.ts';
import type { LocalCluster } from '../src/local-cluster.ts';
import { eventually, freshCluster, waitForLeader } from './helpers/local-cluster.ts';

const INTERVAL = 300;
const TIMEOUT = 1000;
const RETENTION = 2000;
/** Other test suites may share the 2 cores: allowance for watch delivery and process scheduling. */
const SCHEDULING_SLACK_MS = 500;
const FIXTURE = fileURLToPath(new URL('./fixtures/interpreter-process.ts', import.meta.url));
const GiB = 1024 ** 3;

let c: LocalCluster;
let client: ClusterClient;
let discovery: Discovery;
const children = new Set<ChildProcess>();
const senders = new Map<string, HeartbeatSender>();
const clients: ClusterClient[] = [];
/** Every service change seen, with its arrival time here. */
const changes: { at: number; c: ServiceChange }[] = [];

/** Short request timeouts, as every heartbeating process should have with a 1 s eviction timeout. */
async function connect(): Promise<ClusterClient> {
  const x = await ClusterClient.connect({ ...c.clientOptions(), requestTimeoutMs: INTERVAL, quorumWaitMs: 5000 });
  clients.push(x);
  return x;
}

test.before(async () => {
  c = await freshCluster('svcmon', {
    memberArgs: ['--heartbeat-interval', String(INTERVAL), '--heartbeat-timeout', String(TIMEOUT), '--offline-retention', String(RETENTION)],
  });
  client = await connect();
  await waitForLeader(client, 3);
  discovery = await Discovery.start({ client });
  discovery.watchService((x) => changes.push({ at: performance.now(), c: x }));
});

test.after.always(async () => {
  for (const ch of children) ch.kill('SIGKILL');
  for (const s of senders.values()) await s.stop({ deregister: false }).catch(() => {});
  for (const x of clients) await x.close().catch(() => {});
  await discovery?.close();
  await client?.close();
  await c?.stop();
});

function spawnInterpreter(groupId: string, nodeName = ''): { child: ChildProcess; port: Promise<number>; stderr(): string; exited: Promise<number | null> } {
  const o = c.clientOptions();
  const child = spawn(process.execPath, ['--import=tsx', FIXTURE], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env, SC_NATS: o.nats.join(','), SC_CLUSTER: o.cluster, SC_USER: o.user, SC_PASS: o.pass, SC_GROUP_ID: groupId,
      SC_NODE_NAME: nodeName, SC_HEARTBEAT_INTERVAL_MS: String(INTERVAL), SC_HEARTBEAT_TIMEOUT_MS: String(TIMEOUT),
    },
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stderr = '';
  child.stderr!.on('data', (b) => (stderr += b));
  const port = new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b) => {
      out += b;
      const m = /READY (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`interpreter ${groupId} exited (${code}) before READY: ${stderr}`)));
  });
  port.catch(() => {});
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, port, stderr: () => stderr, exited };
}

async function startServer(port: number, memoryUsed: number, memoryCapacity: number): Promise<HeartbeatSender> {
  const s = await HeartbeatSender.start({
    writer: await connect(), identity: { kind: 'server', host: '127.0.0.1', port }, heartbeatIntervalMs: INTERVAL, heartbeatTimeoutMs: TIMEOUT,
    sampleUsage: () => ({ cpuUsed: 50, cpuCapacity: 400, memoryUsed, memoryCapacity }),
  });
  senders.set(s.nodeName, s);
  return s;
}

const seen = (kind: ServiceChange['kind'], name: string) => changes.filter((x) => x.c.kind === kind && x.c.name === name);
const wentOffline = (x: { c: ServiceChange }) => x.c.current?.status === 'OFFLINE' && x.c.previous?.status !== 'OFFLINE';

let intpA: ReturnType<typeof spawnInterpreter>;

test.serial('discovery: waitFor resolves for a live interpreter (with a TCP probe) and rejects with TimeoutError for a missing one', async (t) => {
  intpA = spawnInterpreter('intp-a');
  const info = await discovery.waitFor('intp-a', 30_000, { tcpProbe: true });
  t.is(info.status, 'ONLINE');
  t.is(info.host, '127.0.0.1');
  t.is(info.port, await intpA.port);
  t.like(await discovery.interpreter('intp-a', { consistency: 'linearizable' }), { groupId: 'intp-a', status: 'ONLINE', port: info.port });
  t.deepEqual((await discovery.interpreters({ status: 'ONLINE' })).map((i) => i.groupId), ['intp-a']);

  const started = performance.now();
  const err = await t.throwsAsync(discovery.waitFor('intp-missing', 600), { instanceOf: TimeoutError });
  t.regex(err!.message, /intp-missing.*600 ms.*no entry registered/);
  t.true(performance.now() - started >= 590);
});

test.serial('a clean stop (SIGTERM) deregisters: the entry disappears without going OFFLINE', async (t) => {
  const p = spawnInterpreter('intp-c');
  await discovery.waitFor('intp-c', 30_000);
  await p.port;
  const stoppedAt = performance.now();
  p.child.kill('SIGTERM');
  t.is(await p.exited, 0, p.stderr());
  t.log(`exited ${Math.round(performance.now() - stoppedAt)} ms after SIGTERM; stderr: ${p.stderr() || '(none)'}`);
  await eventually('intp-c gone', async () => seen('interpreter', 'intp-c').some((x) => x.c.type === 'disappear'), 10_000);
  t.deepEqual(seen('interpreter', 'intp-c').filter(wentOffline), []);
});

test.serial('discovery: idlestServer picks the ONLINE server with the most free memory', async (t) => {
  await startServer(9001, 6 * GiB, 8 * GiB); // 2 GiB free
  await startServer(9002, 1 * GiB, 4 * GiB); // 3 GiB free
  await eventually('both servers in the cache', async () => (await discovery.servers({ status: 'ONLINE' })).length === 2);
  t.is((await discovery.idlestServer())?.name, '127.0.0.1:9002');
  t.is((await discovery.idlestServer({ consistency: 'linearizable' }))?.name, '127.0.0.1:9002');
  const s2 = await discovery.server('127.0.0.1:9002');
  t.is(s2?.freeMemory, 3 * GiB);
  t.is(s2?.port, 9002);
});

test.serial('placement: the idlest server dies before the interpreter registers; it is evicted and the next idlest is used', async (t) => {
  const doomed = await startServer(9003, 1 * GiB, 16 * GiB); // 15 GiB free: the idlest
  await eventually('the new idlest server', async () => (await discovery.idlestServer())?.name === doomed.nodeName);
  const asked: string[] = [];
  const placement = await placeInterpreter({
    discovery, waitTimeoutMs: 20_000, tcpProbe: true,
    requestStart: async (server, groupId) => {
      asked.push(server);
      if (server === doomed.nodeName) {
        await doomed.stop({ deregister: false }); // dies on the spot: heartbeats stop, nothing starts
        return;
      }
      spawnInterpreter(groupId, server);
    },
  }, 'intp-p');
  t.deepEqual(asked, ['127.0.0.1:9003', '127.0.0.1:9002']);
  t.is(placement.server, '127.0.0.1:9002');
  t.is(placement.interpreter.nodeName, '127.0.0.1:9002');
  t.is(placement.attempts.length, 1);
  t.regex(placement.attempts[0]!.reason, /9003 went OFFLINE/);
  t.not((await discovery.server('127.0.0.1:9003'))?.status, 'ONLINE', 'OFFLINE, or already removed after the retention');

  // Already ONLINE: reused, nobody asked.
  const again = await placeInterpreter({ discovery, requestStart: async () => t.fail('must not start a second instance') }, 'intp-p');
  t.is(again.server, null);

  // Nobody ever starts it: every ONLINE server is tried once, then a clear error.
  const err = await t.throwsAsync(placeInterpreter({ discovery, waitTimeoutMs: 300, requestStart: async () => {} }, 'intp-never'), { instanceOf: PlacementError });
  t.deepEqual(err!.attempts.map((a) => a.server), ['127.0.0.1:9002', '127.0.0.1:9001']);
  t.regex(err!.message, /no ONLINE server left.*TimeoutError/);
});

test.serial('kill -9 of an interpreter: OFFLINE within timeout + one interval, removed after the retention', async (t) => {
  const lastBeat = () => seen('interpreter', 'intp-a').filter((x) => x.c.current?.status === 'ONLINE').at(-1)!.at;
  const killedAt = performance.now();
  intpA.child.kill('SIGKILL');
  const offline = await eventually('intp-a OFFLINE', async () => seen('interpreter', 'intp-a').find(wentOffline), 10_000, 10);
  const latency = offline.at - killedAt;
  const silence = offline.at - lastBeat();
  t.log(`eviction latency: ${Math.round(latency)} ms after kill -9 (${Math.round(silence)} ms after the last heartbeat seen; timeout ${TIMEOUT}, interval ${INTERVAL})`);
  t.true(silence >= TIMEOUT * 0.9, `evicted too early: ${silence} ms after the last heartbeat`);
  // Bound: timeout + one interval; plus delivery to this watcher and scheduling on a shared 2-core machine.
  t.true(latency <= TIMEOUT + INTERVAL + SCHEDULING_SLACK_MS, `evicted too late: ${latency} ms after the kill`);

  const gone = await eventually('intp-a removed', async () => seen('interpreter', 'intp-a').find((x) => x.c.type === 'disappear'), 10_000, 10);
  const offlineFor = gone.at - offline.at;
  t.log(`removed ${Math.round(offlineFor)} ms after going OFFLINE (retention ${RETENTION})`);
  t.true(offlineFor >= RETENTION * 0.9 && offlineFor <= RETENTION + 200 + SCHEDULING_SLACK_MS, `removed after ${offlineFor} ms`);
  t.is(await discovery.interpreter('intp-a', { consistency: 'linearizable' }), null);
});

test.serial('a leader kill -9 evicts no healthy heartbeating member', async (t) => {
  const healthy = [['server', '127.0.0.1:9001'], ['server', '127.0.0.1:9002'], ['interpreter', 'intp-p']] as const;
  for (const [kind, name] of healthy) t.is(seen(kind, name).at(-1)?.c.current?.status, 'ONLINE', `${name} is ONLINE before`);
  const before = changes.length;
  const leader = (await client.status()).find((s) => s.role === 'leader')!;
  const killedAt = performance.now();
  await c.members.find((m) => m.id === leader.id)!.kill9();
  const next = await waitForLeader(client, 2);
  t.not(next.id, leader.id);
  t.log(`new leader ${next.id} after ${Math.round(performance.now() - killedAt)} ms`);
  const { revision } = await client.list('meta/');
  // Long enough under the new leader for its grace to end and a timeout to pass: 8 heartbeats each.
  await eventually('8 heartbeats of every healthy member under the new leader', async () =>
    healthy.every(([kind, name]) => seen(kind, name).filter((x) => (x.c.current?.revision ?? 0) > revision).length >= 8), 20_000);
  const evicted = changes.slice(before).filter(wentOffline).map((x) => x.c.name);
  t.deepEqual(evicted, [], 'nobody was marked OFFLINE');
  for (const [kind, name] of healthy) t.is(seen(kind, name).at(-1)?.c.current?.status, 'ONLINE');
});
