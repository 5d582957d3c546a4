/**
 * Side-by-side A/B of two checkouts of this project on this machine: both clusters up at once,
 * the same closed-loop put (or get) load run against each in alternating short slices, so the
 * machine's changing load hits both alike. Prints JSON lines: one per slice, then a summary per
 * client count with pooled p50/p99, median slice ops/s and the median of per-round ratios b/a, and
 * CPU ms per operation (from /proc: members, broker, and this process's client side), the figure
 * that moves least with the machine's load.
 *
 *   tsx scripts/bench-ab.ts --a /path/to/old-checkout [--b .] [--clients 1,16,64] [--slice 2] [--rounds 8] [--op put|get] [--b-env K=V,K=V]
 *
 * Each checkout's own src/local-cluster.ts and src/client.ts are used (node_modules must resolve from it).
 * --b-env: environment variables for side b's member processes only (e.g. MALLOC_ARENA_MAX=2), with
 * --a and --b the same checkout to measure a setting.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseFlags } from '../src/config.ts';
import { cpuMsOf } from './proc-stat.ts';

const flags = parseFlags(process.argv.slice(2));
const dirs = { a: resolve(String(flags.a ?? '.')), b: resolve(String(flags.b ?? '.')) };
const clientCounts = String(flags.clients ?? '1,16').split(',').map(Number);
const sliceMs = Number(flags.slice ?? 2) * 1000;
const rounds = Number(flags.rounds ?? 8);
const op = String(flags.op ?? 'put');
const value = 'x'.repeat(256);
const print = (o: object) => console.log(JSON.stringify(o));
const pct = (s: number[], p: number) => (s.length ? +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!.toFixed(2) : NaN);
const median = (xs: number[]) => pct([...xs].sort((x, y) => x - y), 50);

interface Client { put(k: string, v: unknown): Promise<unknown>; get(k: string): Promise<unknown>; status(): Promise<{ id: string; role: string; leader: string | null; rssBytes: number }[]>; close(): Promise<void> }
interface Side { name: 'a' | 'b'; stop(): Promise<void>; clients: Client[]; pids(): { members: number[]; broker: number[] } }
interface Cpu { members: number; broker: number; client: number }

async function startSide(name: 'a' | 'b', root: string): Promise<Side> {
  const { startLocalCluster } = await import(join(root, 'src/local-cluster.ts'));
  const { ClusterClient } = await import(join(root, 'src/client.ts'));
  const dir = await mkdtemp(join(tmpdir(), `sc-ab-${name}-`));
  const c = await startLocalCluster({ dir, logLevel: 'warn' });
  const max = Math.max(...clientCounts);
  const clients: Client[] = await Promise.all(Array.from({ length: max }, () => ClusterClient.connect({ ...c.clientOptions(), quorumWaitMs: 10_000 })));
  for (const deadline = performance.now() + 30_000; ;) {
    const all = await clients[0]!.status().catch(() => []);
    const leaders = all.filter((s) => s.role === 'leader');
    if (all.length === 3 && leaders.length === 1 && all.every((s) => s.leader === leaders[0]!.id)) break;
    if (performance.now() > deadline) throw new Error(`${name}: no leader within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  for (let k = 0; k < 1000; k += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => clients[0]!.put(`bench/${k + j}`, value)));
  return {
    name, clients,
    pids: () => ({ members: c.members.map((m: { pid?: number }) => m.pid ?? 0), broker: c.nats.servers.map((s: { pid: number }) => s.pid) }),
    stop: async () => {
      await Promise.all(clients.map((x) => x.close()));
      await c.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function slice(side: Side, n: number): Promise<{ ops: number; lat: number[]; errors: number; cpuPerOp: Cpu }> {
  const lat: number[] = [];
  let errors = 0;
  let i = 0;
  const pids = side.pids();
  const before = { members: cpuMsOf(pids.members), broker: cpuMsOf(pids.broker), client: process.cpuUsage() };
  const end = performance.now() + sliceMs;
  await Promise.all(side.clients.slice(0, n).map(async (client) => {
    while (performance.now() < end) {
      const key = `bench/${i++ % 1000}`;
      const t0 = performance.now();
      try {
        if (op === 'put') await client.put(key, value);
        else await client.get(key);
        lat.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  }));
  const client = process.cpuUsage(before.client);
  const per = (ms: number) => (lat.length ? +(ms / lat.length).toFixed(4) : NaN);
  const cpuPerOp = {
    members: per(cpuMsOf(pids.members) - before.members), broker: per(cpuMsOf(pids.broker) - before.broker),
    client: per((client.user + client.system) / 1000),
  };
  return { ops: lat.length, lat, errors, cpuPerOp };
}

const sideA = await startSide('a', dirs.a);
const bEnv = String(flags['b-env'] ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]);
for (const [k, v] of bEnv) process.env[k] = v;
const sideB = await startSide('b', dirs.b);
for (const [k] of bEnv) delete process.env[k];
const sides = [sideA, sideB];
try {
  for (const n of clientCounts) {
    // Warm-up, not reported.
    for (const s of sides) await slice(s, n);
    const lat: Record<string, number[]> = { a: [], b: [] };
    const ops: Record<string, number[]> = { a: [], b: [] };
    const ratios: number[] = [];
    const cpu: Record<string, Cpu[]> = { a: [], b: [] };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? [...sides].reverse() : sides;
      const got: Record<string, number> = {};
      for (const s of order) {
        const x = await slice(s, n);
        lat[s.name]!.push(...x.lat);
        ops[s.name]!.push(x.ops / (sliceMs / 1000));
        got[s.name] = x.ops;
        cpu[s.name]!.push(x.cpuPerOp);
        print({ kind: 'slice', side: s.name, clients: n, round: r, opsPerSec: x.ops / (sliceMs / 1000), p50: median(x.lat), errors: x.errors, cpuMsPerOp: x.cpuPerOp, load: +loadavg()[0]!.toFixed(2) });
      }
      ratios.push(got.b! / Math.max(1, got.a!));
    }
    const rss = async (s: Side) => Math.max(...(await s.clients[0]!.status()).map((m) => Math.round(m.rssBytes / 2 ** 20)));
    const sum = (k: 'a' | 'b') => {
      const s = [...lat[k]!].sort((x, y) => x - y);
      const c = (f: keyof Cpu) => {
        const xs = cpu[k]!.map((x) => x[f]).sort((x, y) => x - y);
        return +xs[xs.length >> 1]!.toFixed(4);
      };
      // Medians per slice (/proc counts CPU in 10 ms ticks: a 2 s slice resolves about 1%).
      const cpuMsPerOp = { members: c('members'), broker: c('broker'), client: c('client'), total: +(c('members') + c('broker') + c('client')).toFixed(4) };
      return { opsPerSec: median(ops[k]!), p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), cpuMsPerOp };
    };
    print({
      kind: 'summary', op, clients: n, rounds, sliceMs, a: { ...sum('a'), maxRssMB: await rss(sides[0]!) }, b: { ...sum('b'), maxRssMB: await rss(sides[1]!) },
      opsRatioBA: median(ratios), p50RatioBA: +(sum('b').p50 / sum('a').p50).toFixed(2),
      cpuPerOpRatioBA: +(sum('b').cpuMsPerOp.total / sum('a').cpuMsPerOp.total).toFixed(3),
    });
  }
} finally {
  for (const s of sides) await s.stop();
}
