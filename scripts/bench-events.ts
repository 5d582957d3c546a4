/**
 * Cluster events throughput and delivery latency on a local cluster (3 members, 3 NATS servers):
 * one publisher, two subscribers, each on its own client connection, all in this process (so one
 * clock times publish → listener). Prints one JSON object.
 *
 *   node --import=tsx scripts/bench-events.ts [fastEvents=20000] [durableEvents=5000]
 *
 * burst:  publish as fast as the API accepts (durable: up to `window` broadcasts in flight, which
 *         the publisher group-commits into batches); events/s = events / time until both
 *         subscribers have all of them. Latency includes queueing behind the burst.
 * paced:  one event at a time (fast: 500/s; durable: the next once the previous committed), the
 *         latency of an event on a quiet system.
 */
import { ClusterEvents } from '../actors/events.ts';
import { ClusterClient } from '../src/client.ts';
import { startLocalCluster } from '../src/local-cluster.ts';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const FAST_EVENTS = Number(process.argv[2] ?? 20_000);
const DURABLE_EVENTS = Number(process.argv[3] ?? 5_000);
const DURABLE_WINDOW = 512;
const PACED = 300;

interface Sample { i: number; t: number }

function percentiles(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { p50Ms: r(at(0.5)), p99Ms: r(at(0.99)), maxMs: r(s.at(-1) ?? NaN) };
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) {
      console.error(`bench-events: gave up waiting for ${what}`);
      return false;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

const dir = await mkdtemp(join(tmpdir(), 'sc-bench-events-'));
const cluster = await startLocalCluster({ dir, logLevel: 'warn' });
const clients: ClusterClient[] = [];
const instances: ClusterEvents[] = [];
try {
  const admin = await ClusterClient.connect(cluster.clientOptions());
  clients.push(admin);
  for (;;) {
    const st = await admin.status().catch(() => []);
    if (st.length === 3 && st.filter((s) => s.role === 'leader').length === 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const start = async (memberId: string, cursorDir?: string) => {
    const client = await ClusterClient.connect(cluster.clientOptions());
    clients.push(client);
    const ev = await ClusterEvents.start({ client, memberId, cursorDir });
    instances.push(ev);
    return { ev, client };
  };
  const { ev: pub, client: pubClient } = await start('bench-pub');
  const subs = [(await start('bench-sub-1', join(dir, 'cursors'))).ev, (await start('bench-sub-2', join(dir, 'cursors'))).ev];

  // Per subscriber: samples per topic (warm-up events have i < 0).
  const got = new Map<string, Sample[][]>();
  const latencies = new Map<string, number[]>();
  for (const topic of ['fast-burst', 'fast-paced', 'durable-burst', 'durable-paced']) {
    got.set(topic, subs.map(() => []));
    latencies.set(topic, []);
    subs.forEach((s, k) => s.on(topic, (payload) => {
      const p = payload as Sample;
      if (p.i < 0) return void got.get(topic)![k]!.push(p);
      latencies.get(topic)!.push(performance.now() - p.t);
      got.get(topic)![k]!.push(p);
    }));
  }
  await Promise.all(subs.map((s) => s.ready()));
  // Fast subscriptions must reach every broker server before a burst (at most once, no replay).
  for (const topic of ['fast-burst', 'fast-paced']) {
    await until(`warm-up of ${topic}`, () => {
      void pub.broadcast(topic, { i: -1, t: performance.now() });
      return got.get(topic)!.every((g) => g.length > 0);
    }, 10_000);
    got.set(topic, subs.map(() => []));
  }
  const received = (topic: string) => Math.min(...got.get(topic)!.map((g) => g.length));
  const result: Record<string, unknown> = { members: 3, natsServers: 3, subscribers: subs.length, cpus: (await import('node:os')).cpus().length };

  // ---- fast burst
  {
    const t0 = performance.now();
    for (let i = 0; i < FAST_EVENTS; i++) {
      await pub.broadcast('fast-burst', { i, t: performance.now() });
      if (i % 500 === 499) await pubClient.nc.flush(); // keep the client's outbound buffer bounded
    }
    const sentMs = performance.now() - t0;
    await until('fast burst delivered', () => received('fast-burst') >= FAST_EVENTS, 30_000);
    const ms = performance.now() - t0;
    result.fastBurst = {
      events: FAST_EVENTS, deliveries: latencies.get('fast-burst')!.length, lost: 2 * FAST_EVENTS - latencies.get('fast-burst')!.length,
      publishPerSec: Math.round(FAST_EVENTS / (sentMs / 1000)), eventsPerSec: Math.round(FAST_EVENTS / (ms / 1000)),
      ...percentiles(latencies.get('fast-burst')!),
    };
  }
  // ---- fast paced
  {
    const t0 = performance.now();
    for (let i = 0; i < PACED; i++) {
      await pub.broadcast('fast-paced', { i, t: performance.now() });
      const next = t0 + (i + 1) * 2;
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now()))); // the pacing itself, not a wait for a condition
    }
    await until('fast paced delivered', () => received('fast-paced') >= PACED, 10_000);
    result.fastPaced = { events: PACED, ratePerSec: 500, ...percentiles(latencies.get('fast-paced')!) };
  }
  // ---- durable burst
  {
    const t0 = performance.now();
    let sent = 0;
    const inFlight = new Set<Promise<unknown>>();
    while (sent < DURABLE_EVENTS) {
      while (inFlight.size < DURABLE_WINDOW && sent < DURABLE_EVENTS) {
        const p = pub.broadcast('durable-burst', { i: sent++, t: performance.now() }, { mode: 'durable' });
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      }
      await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const committedMs = performance.now() - t0;
    await until('durable burst delivered', () => received('durable-burst') >= DURABLE_EVENTS, 60_000);
    const ms = performance.now() - t0;
    const orderOk = got.get('durable-burst')!.every((g) => g.every((s, k) => s.i === k));
    result.durableBurst = {
      events: DURABLE_EVENTS, window: DURABLE_WINDOW, committedPerSec: Math.round(DURABLE_EVENTS / (committedMs / 1000)),
      eventsPerSec: Math.round(DURABLE_EVENTS / (ms / 1000)), inOrderExactlyOnce: orderOk && received('durable-burst') === DURABLE_EVENTS,
      ...percentiles(latencies.get('durable-burst')!),
    };
  }
  // ---- durable paced
  {
    const t0 = performance.now();
    for (let i = 0; i < PACED; i++) await pub.broadcast('durable-paced', { i, t: performance.now() }, { mode: 'durable' });
    await until('durable paced delivered', () => received('durable-paced') >= PACED, 30_000);
    result.durablePaced = { events: PACED, eventsPerSec: Math.round(PACED / ((performance.now() - t0) / 1000)), ...percentiles(latencies.get('durable-paced')!) };
  }
  result.publisherCounters = pub.counters.toJSON();
  console.log(JSON.stringify(result, null, 2));
} finally {
  for (const ev of instances) await ev.close().catch(() => {});
  for (const c of clients) await c.close().catch(() => {});
  await cluster.stop();
}
