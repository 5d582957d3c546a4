/**
 * Closed-loop benchmark of a local cluster (3 member processes, 3 NATS servers, fsync on):
 *   tsx scripts/bench-cluster.ts [--clients 1,16] [--seconds 5] [--workload put|get|stale|mixed] [--failover 5]
 * Prints one JSON line per run: ops/s, latency percentiles (ms), errors, member RSS, GC pauses and
 * event-loop lag per member; and, with --failover N, the unavailability window (kill -9 of the
 * leader → first acknowledged write).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterClient, type MemberStatus } from '../src/client.ts';
import { parseFlags } from '../src/config.ts';
import { startLocalCluster, type LocalCluster } from '../src/local-cluster.ts';

const flags = parseFlags(process.argv.slice(2));
const clientCounts = String(flags.clients ?? '1,16').split(',').map(Number);
const seconds = Number(flags.seconds ?? 5);
const workload = String(flags.workload ?? 'put');
const failoverRounds = Number(flags.failover ?? 0);
const keys = Number(flags.keys ?? 1000);
const value = 'x'.repeat(Number(flags['value-bytes'] ?? 256));

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return +sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(2);
}

async function waitLeader(client: ClusterClient, members = 3): Promise<string> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      const all = await client.status();
      const leaders = all.filter((s) => s.role === 'leader');
      if (all.length >= members && leaders.length === 1 && all.every((s) => s.leader === leaders[0]!.id)) return leaders[0]!.id;
    } catch {
      // members still starting
    }
    if (performance.now() > deadline) throw new Error('no leader within 30 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sum of a counter over all its label sets (keys are `name` or `name{labels}`). */
function sumCounter(counters: Record<string, number>, name: string): number {
  let n = 0;
  for (const [k, v] of Object.entries(counters)) if (k === name || k.startsWith(`${name}{`)) n += v;
  return n;
}

async function walTotals(client: ClusterClient) {
  const all = await client.status();
  return {
    fsyncs: all.reduce((n, s) => n + s.fsyncMs.count, 0),
    fsyncMs: all.reduce((n, s) => n + s.fsyncMs.sum, 0),
    entries: all.reduce((n, s) => n + (s.counters['wal_entries_synced_total'] ?? 0), 0),
    raftMessages: all.reduce((n, s) => n + sumCounter(s.counters, 'raft_messages_sent_total'), 0),
    gc: Object.fromEntries(all.map((s) => [s.id, s.gcMs])),
    lag: Object.fromEntries(all.map((s) => [s.id, s.loopLagMs])),
  };
}

/**
 * A member's event-loop lag during a run, from its lag histogram before and after: samples, p99
 * and max as the upper bound of their bucket (1, 2, 5, 10, 25, 50, 100 ms…; a sample over the last
 * bound is reported as that bound), except that the max is exact when the member listed a stall
 * (>= 100 ms) that ended during the run, and the longest such stall.
 */
function lagDuring(before: MemberStatus['loopLagMs'] | undefined, after: MemberStatus['loopLagMs'], startedAt: number) {
  if (before && before.count > after.count) before = undefined; // the member restarted meanwhile
  const counts = after.counts.map((c, i) => c - (before?.counts[i] ?? 0));
  const samples = after.count - (before?.count ?? 0);
  const upTo = (rank: number) => {
    let seen = 0;
    for (let i = 0; i < counts.length; i++) if ((seen += counts[i]!) >= rank) return after.bounds[i]!;
    return after.bounds.at(-1)!;
  };
  const stalls = after.stalls.filter((s) => s.at >= startedAt);
  const longest = stalls.reduce((m, s) => Math.max(m, s.ms), 0);
  return {
    samples,
    p99Ms: samples ? upTo(Math.ceil(samples * 0.99)) : null,
    maxMs: longest || (samples ? upTo(samples) : null),
    stalls: stalls.length,
    longestStallMs: longest || null,
  };
}

async function run(c: LocalCluster, clients: ClusterClient[], n: number) {
  const lat: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  let i = 0;
  const loop = async (client: ClusterClient) => {
    while (performance.now() < end) {
      const key = `bench/${i++ % keys}`;
      const t0 = performance.now();
      try {
        const op = workload === 'mixed' ? (i % 2 ? 'put' : 'get') : workload;
        if (op === 'put') await client.put(key, value);
        else if (op === 'get') await client.get(key);
        else await client.get(key, { consistency: 'stale' });
        lat.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const walBefore = await walTotals(clients[0]!);
  const startedAt = Date.now();
  const t0 = performance.now();
  await Promise.all(clients.slice(0, n).map(loop));
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const status = await clients[0]!.status();
  const walAfter = await walTotals(clients[0]!);
  const fsyncs = walAfter.fsyncs - walBefore.fsyncs;
  return {
    bench: 'cluster', workload, clients: n, seconds: +elapsed.toFixed(2), ops: lat.length, opsPerSec: Math.round(lat.length / elapsed),
    p50: pct(lat, 50), p90: pct(lat, 90), p99: pct(lat, 99), max: pct(lat, 100), errors,
    rssMB: Object.fromEntries(status.map((s) => [s.id, Math.round(s.rssBytes / 2 ** 20)])),
    // Where the largest member's memory is: V8 heap used / allocated, off-heap (MB).
    memMB: (() => {
      const m = status.reduce((x, y) => (y.rssBytes > x.rssBytes ? y : x));
      const mb = (b: number) => Math.round(b / 2 ** 20);
      return { id: m.id, role: m.role, rss: mb(m.rssBytes), heapUsed: mb(m.memory.heapUsed), heapTotal: mb(m.memory.heapTotal), external: mb(m.memory.external), arrayBuffers: mb(m.memory.arrayBuffers) };
    })(),
    // Group commit through the whole Raft path: entries made durable per WAL fdatasync, all members.
    entriesPerFsync: fsyncs ? +((walAfter.entries - walBefore.entries) / fsyncs).toFixed(1) : null,
    fsyncMsMean: fsyncs ? +((walAfter.fsyncMs - walBefore.fsyncMs) / fsyncs).toFixed(2) : null,
    // Raft messages all members sent per acknowledged operation (heartbeats included).
    raftMessagesPerOp: lat.length ? +((walAfter.raftMessages - walBefore.raftMessages) / lat.length).toFixed(2) : null,
    // Garbage-collection pauses per member during the run: count, total ms, and how many took over 5 ms.
    gc: Object.fromEntries(Object.entries(walAfter.gc).map(([id, g]) => {
      const b = walBefore.gc[id] ?? { counts: g.counts.map(() => 0), sum: 0, count: 0 };
      const over5 = g.counts.reduce((n, c, i) => n + (g.bounds[i]! > 5 ? c - (b.counts[i] ?? 0) : 0), 0) + (g.count - g.counts.reduce((x, y) => x + y, 0)) - (b.count - b.counts.reduce((x, y) => x + y, 0));
      return [id, { pauses: g.count - b.count, ms: +(g.sum - b.sum).toFixed(1), over5ms: over5 }];
    })),
    // Event-loop lag per member during the run (ms; see lagDuring) and the longest stall of the run.
    loopLag: Object.fromEntries(Object.entries(walAfter.lag).map(([id, l]) => [id, lagDuring(walBefore.lag[id], l, startedAt)])),
    longestStall: Object.entries(walAfter.lag).reduce<{ member: string; ms: number } | null>((best, [id, l]) => {
      const ms = lagDuring(walBefore.lag[id], l, startedAt).maxMs ?? 0;
      return !best || ms > best.ms ? { member: id, ms } : best;
    }, null),
    members: c.members.length,
  };
}

async function failover(c: LocalCluster, client: ClusterClient, rounds: number) {
  const windows: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const leader = await waitLeader(client);
    await client.put('failover/warm', r);
    const victim = c.members.find((m) => m.id === leader)!;
    const killedAt = performance.now();
    await victim.kill9();
    for (let k = 0; ; k++) {
      try {
        await client.put('failover/probe', k);
        break;
      } catch {
        // unavailable: keep trying
      }
    }
    windows.push(performance.now() - killedAt);
    victim.start();
    // All three members up and following one leader before the next round.
    await waitLeader(client, c.members.length);
    await client.put('failover/settle', r);
  }
  const sorted = [...windows].sort((a, b) => a - b);
  return { bench: 'failover', rounds, windowsMs: windows.map((w) => Math.round(w)), medianMs: Math.round(pct(sorted, 50)), maxMs: Math.round(pct(sorted, 100)) };
}

const dir = await mkdtemp(join(tmpdir(), 'sc-bench-'));
const c = await startLocalCluster({ dir, logLevel: 'warn' });
try {
  const max = Math.max(...clientCounts, 1);
  const clients = await Promise.all(Array.from({ length: max }, () => ClusterClient.connect({ ...c.clientOptions(), quorumWaitMs: 10_000 })));
  await waitLeader(clients[0]!);
  if (workload !== 'put') for (let k = 0; k < keys; k += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => clients[0]!.put(`bench/${k + j}`, value)));
  for (const n of clientCounts) console.log(JSON.stringify(await run(c, clients, n)));
  if (failoverRounds > 0) console.log(JSON.stringify(await failover(c, clients[0]!, failoverRounds)));
  await Promise.all(clients.map((cl) => cl.close()));
} finally {
  await c.stop();
  await rm(dir, { recursive: true, force: true });
}
