/**
 * Where the time of a write goes: CPU profiles of the member processes and of the client side under
 * a closed-loop put load, the WAL's fsync latency on this disk, and NATS hop latency.
 *
 *   tsx scripts/profile-member.ts profile [--clients 16] [--op put|get|stale] [--seconds 10] [--warmup 3] [--keep DIR]
 *       Starts 3 NATS servers and 3 members with `node --cpu-prof` (the flag is not allowed in
 *       NODE_OPTIONS, so the members are spawned here with the same arguments src/local-cluster.ts
 *       uses), runs the load with the client side profiled in-process (node:inspector), stops the
 *       members cleanly (the profiles are written at exit) and prints, for the load window only:
 *       CPU per op of every process (idle CPU subtracted), and per profile the top self-time
 *       functions, self time by module and inclusive time of the busiest functions.
 *   tsx scripts/profile-member.ts breakdown [--rounds 10] [--slice 1] [--variants disk,tmpfs,one-server]
 *       One client, no profilers: stale get, linearizable get and put on a disk-backed cluster and on
 *       a tmpfs one (fsync ~free), both up at once and taking turns in 1 s slices; latency and CPU per
 *       op of the leader, a follower, the broker and the client. The differences locate a put's time.
 *       one-server: on disk, with every member and the client connected to the same broker server.
 *   tsx scripts/profile-member.ts trace [--seconds 10] [--root DIR] [--one-server]
 *       One client's sequential puts with timestamps taken inside the members (a preload module wraps
 *       the members' own prototypes: no source change): the p50 of each part of a write — client hops,
 *       leader persist, replication hops, follower persist, leader and follower CPU.
 *   tsx scripts/profile-member.ts fsync [--dir DIR] [--n 400]
 *       fdatasync latency of 300-byte appends (raw), of one DiskRaftStorage.persist with one 256 B
 *       entry (what the leader and each follower wait for), of a commit-only persist (no fsync),
 *       and of two fsyncs at once on two files of the same disk (leader and follower of a local cluster).
 *   tsx scripts/profile-member.ts nats [--n 3000]
 *       Request/reply round trip through the project's broker (3 routed nats-servers), on one server
 *       and across a route, with a 300 B payload: one hop is about half of it.
 *   tsx scripts/profile-member.ts analyze FILE.cpuprofile [--from US --to US] [--top 25]
 * JSON lines on stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'nats';
import { natsConnectOptions } from '../actors/cluster-server.ts';
import { ClusterClient } from '../src/client.ts';
import { parseFlags } from '../src/config.ts';
import { startNatsCluster } from '../src/nats/broker.ts';
import { loadOrCreateCredentials } from '../src/nats/credentials.ts';
import { EntryType } from '../src/raft/types.ts';
import { NodeFileSystem } from '../src/storage/fs.ts';
import { DiskRaftStorage } from '../src/storage/raft-storage.ts';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
const CLI = join(ROOT, 'src/cli.ts');
const [command = 'profile', ...rest] = process.argv.slice(2);
const positional = rest.filter((a, i) => !a.startsWith('--') && !(rest[i - 1]?.startsWith('--')));
const flags = parseFlags(rest.filter((a) => !positional.includes(a)));
const print = (o: object) => console.log(JSON.stringify(o));
const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const r2 = (x: number) => +x.toFixed(3);

function dist(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const p = (q: number) => r2(s[Math.min(s.length - 1, Math.floor((q / 100) * s.length))]!);
  return { n: s.length, p50: p(50), p90: p(90), p99: p(99), max: r2(s.at(-1)!), mean: r2(s.reduce((a, b) => a + b, 0) / s.length) };
}

/** utime+stime of a process in ms (/proc), null once it is gone. */
function cpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // CLK_TCK is 100 on Linux
  } catch {
    return null;
  }
}

const monoUs = () => Number(process.hrtime.bigint() / 1000n); // CLOCK_MONOTONIC, as V8's profile timestamps

// ---- .cpuprofile analysis ----------------------------------------------------------------------

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  return u.startsWith(ROOT) ? u.slice(ROOT.length + 1) : u;
}

function bucket(cf: CallFrame): string {
  const name = cf.functionName;
  if (name === '(garbage collector)') return 'gc';
  if (name === '(idle)') return 'idle';
  if (name === '(program)') return 'program (V8/native, no JS frame)';
  if (name === '(root)') return 'root';
  const u = shortUrl(cf.url);
  if (!u) return 'native builtins';
  if (u.startsWith('node:')) return 'node internals';
  const pkg = /^(@[^/]+\/[^/]+|[^/]+)\//.exec(u);
  if (cf.url.includes('node_modules/')) return `npm:${pkg?.[1] ?? u}`;
  if (u.startsWith('src/raft/')) return 'src/raft (core)';
  if (u.startsWith('src/storage/')) return 'src/storage';
  if (u.startsWith('src/sm/')) return 'src/sm';
  if (u === 'src/codec.ts') return 'src/codec.ts';
  if (u.startsWith('machines/')) return 'machines';
  if (u.startsWith('actors/')) return `actors/${u.slice(7)}`;
  return u.split('/').slice(0, 2).join('/');
}

const frameKey = (cf: CallFrame) => `${cf.functionName || '(anonymous)'} ${shortUrl(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;

export function analyze(p: CpuProfile, o: { from?: number; to?: number; top?: number } = {}) {
  const top = o.top ?? 25;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const selfBucket = new Map<string, number>();
  const incl = new Map<string, number>();
  const inclBucket = new Map<string, number>();
  let t = p.startTime;
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    if ((o.from !== undefined && t < o.from) || (o.to !== undefined && t > o.to)) continue;
    // Weight: the time until the next sample (the last one gets the previous interval).
    const w = (p.timeDeltas[i + 1] ?? p.timeDeltas[i]!) / 1000;
    const leaf = byId.get(p.samples[i]!)!;
    total += w;
    if (leaf.callFrame.functionName === '(idle)') {
      idle += w;
      continue;
    }
    const k = frameKey(leaf.callFrame);
    self.set(k, (self.get(k) ?? 0) + w);
    const b = bucket(leaf.callFrame);
    selfBucket.set(b, (selfBucket.get(b) ?? 0) + w);
    const seen = new Set<string>();
    const seenB = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const cf = byId.get(id)!.callFrame;
      const fk = frameKey(cf);
      if (!seen.has(fk)) {
        seen.add(fk);
        incl.set(fk, (incl.get(fk) ?? 0) + w);
      }
      const fb = bucket(cf);
      if (!seenB.has(fb)) {
        seenB.add(fb);
        inclBucket.set(fb, (inclBucket.get(fb) ?? 0) + w);
      }
    }
  }
  const busy = total - idle;
  const list = (m: Map<string, number>, n: number, skip = new Set<string>()) =>
    [...m].filter(([k]) => !skip.has(k)).sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, ms]) => ({ fn: k, ms: Math.round(ms), pctOfBusy: +((100 * ms) / busy).toFixed(1) }));
  const roots = new Set(['(root) ', 'root']);
  return {
    windowMs: Math.round(total), busyMs: Math.round(busy), busyPct: +((100 * busy) / total).toFixed(1),
    topSelf: list(self, top),
    selfByModule: list(selfBucket, 20),
    inclusiveByModule: list(inclBucket, 20, roots),
    topInclusive: list(incl, top, roots),
  };
}

// ---- a local cluster with member processes we spawn ourselves -------------------------------------

interface Cluster {
  members: { id: string; child: ChildProcess; exited: Promise<void> }[];
  clients: ClusterClient[];
  leader: string;
  profDir: string;
  /** Every server process by name (members n1..n3, broker nats-0..2). */
  pids: Record<string, number>;
  /** Which broker server each member and the client is connected to (from the servers' /connz). */
  topology(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

/**
 * 3 NATS servers and 3 members as src/local-cluster.ts starts them (same flags, each member listing
 * the servers from a different one), spawned here so that `node --cpu-prof` can be added.
 */
async function startCluster(o: { root: string; clients: number; cpuProf: boolean; oneServer?: boolean; preload?: string; env?: Record<string, string> }): Promise<Cluster> {
  const dir = await mkdtemp(join(o.root, 'sc-profile-'));
  const profDir = join(dir, 'profiles');
  mkdirSync(join(dir, 'logs'), { recursive: true });
  mkdirSync(profDir, { recursive: true });
  const credentialsFile = join(dir, 'credentials.json');
  const credentials = loadOrCreateCredentials(credentialsFile);
  const nats = await startNatsCluster({ size: 3, dir: join(dir, 'nats'), credentials });
  const ids = ['n1', 'n2', 'n3'];
  const members: Cluster['members'] = [];
  const clients: ClusterClient[] = [];
  const stop = async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    // SIGTERM: the member stops cleanly and exits, and V8 writes the profile.
    for (const m of members) if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGTERM');
    const late = setTimeout(() => members.forEach((m) => m.child.kill('SIGKILL')), 10_000);
    await Promise.all(members.map((m) => m.exited));
    clearTimeout(late);
    await nats.stop();
  };
  try {
    for (const [i, id] of ids.entries()) {
      // oneServer: every member and the client on the first server only (no route hops). Otherwise
      // as local-cluster.ts, though nats.js shuffles the list (noRandomize is off), so which server a
      // member lands on is random.
      const urls = o.oneServer ? [nats.urls[0]!] : [...nats.urls.slice(i), ...nats.urls.slice(0, i)];
      const log = await open(join(dir, 'logs', `${id}.log`), 'a');
      // No --cpu-prof-name: with --import=tsx the module loader runs in a worker thread that writes
      // its own profile, and a fixed name lets the two overwrite each other.
      const prof = o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
      const child = spawn(process.execPath, [
        ...prof, '--import=tsx', ...(o.preload ? [`--import=${o.preload}`] : []), CLI, 'node',
        '--id', id, '--peers', ids.join(','), '--cluster', 'submarine', '--nats', urls.join(','),
        '--nats-credentials', credentialsFile, '--data-dir', join(dir, 'data', id), '--log-level', 'warn',
      ], { cwd: ROOT, stdio: ['pipe', log.fd, log.fd], env: { ...process.env, ...o.env, SUBMARINE_EXIT_WITH_PARENT: '1', SC_TRACE_MEMBER: id } });
      await log.close();
      members.push({ id, child, exited: new Promise((r) => child.once('exit', () => r())) });
    }
    const opts = { nats: o.oneServer ? [nats.urls[0]!] : nats.urls, cluster: 'submarine', user: credentials.client.user, pass: credentials.client.pass, quorumWaitMs: 10_000 };
    for (let k = 0; k < o.clients; k++) clients.push(await ClusterClient.connect(opts));
    let leader = '';
    for (const deadline = Date.now() + 30_000; !leader; await pause(50)) {
      const st = await clients[0]!.status().catch(() => []);
      const l = st.filter((s) => s.role === 'leader');
      if (st.length === 3 && l.length === 1 && st.every((s) => s.leader === l[0]!.id)) leader = l[0]!.id;
      if (Date.now() > deadline) throw new Error('no leader');
    }
    const pids = { ...Object.fromEntries(members.map((m) => [m.id, m.child.pid!])), ...Object.fromEntries(nats.servers.map((s) => [s.name, s.pid])) };
    const topology = async () => {
      const out: Record<string, string> = {};
      for (const srv of nats.servers) {
        const res = await fetch(`http://127.0.0.1:${srv.httpPort}/connz?limit=1000`).then((r) => r.json() as Promise<{ connections?: { name?: string }[] }>).catch(() => ({ connections: [] }));
        for (const conn of res.connections ?? []) if (conn.name) out[conn.name.replace('submarine-cluster ', '')] = srv.name;
      }
      return out;
    };
    return {
      members, clients, leader, profDir, pids, topology,
      stop: async () => {
        await stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

type Op = 'put' | 'get' | 'stale';
const VALUE = 'x'.repeat(256);
let keyCounter = 0;

async function load(clients: ClusterClient[], op: Op, seconds: number): Promise<number[]> {
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  await Promise.all(clients.map(async (c) => {
    while (performance.now() < end) {
      const key = `bench/${keyCounter++ % 1000}`;
      const t0 = performance.now();
      if (op === 'put') await c.put(key, VALUE);
      else await c.get(key, { consistency: op === 'stale' ? 'stale' : 'linearizable' });
      lat.push(performance.now() - t0);
    }
  }));
  return lat;
}

function cpuSnap(pids: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid) ?? NaN]));
}

/** Idle CPU rate (ms per s) of every process, over `ms`. */
async function idleRates(pids: Record<string, number>, ms: number): Promise<Record<string, number>> {
  const a = cpuSnap(pids);
  const t = performance.now();
  await pause(ms);
  const b = cpuSnap(pids);
  const s = (performance.now() - t) / 1000;
  return Object.fromEntries(Object.keys(pids).map((k) => [k, (b[k]! - a[k]!) / s]));
}

/** Runs `op`: latencies and CPU per op of the leader, a follower (mean), the broker (sum) and the client. */
async function measuredRaw(c: Cluster, op: Op, seconds: number, idle: Record<string, number>, clients = c.clients) {
  const c0 = cpuSnap(c.pids);
  const cc0 = process.cpuUsage();
  const t0 = performance.now();
  const lat = await load(clients, op, seconds);
  const s = (performance.now() - t0) / 1000;
  const c1 = cpuSnap(c.pids);
  const cc = process.cpuUsage(cc0);
  const ops = lat.length;
  const cpu: Record<string, number> = {};
  for (const k of Object.keys(c.pids)) cpu[k] = r2((c1[k]! - c0[k]! - idle[k]! * s) / ops);
  cpu.client = r2((cc.user + cc.system) / 1000 / ops);
  const role = (k: string) => (k === c.leader ? 'leader' : k.startsWith('n') ? 'follower' : k);
  const followers = Object.keys(cpu).filter((k) => role(k) === 'follower');
  const brokers = Object.keys(cpu).filter((k) => k.startsWith('nats-'));
  return {
    lat, seconds: s,
    cpuMsPerOp: {
      leader: cpu[c.leader]!, follower: r2(followers.reduce((a, k) => a + cpu[k]!, 0) / followers.length),
      broker: r2(brokers.reduce((a, k) => a + cpu[k]!, 0)), client: cpu.client,
    } as Record<string, number>,
  };
}

/** Runs `op` and reports latency and CPU per op of every process (its idle CPU rate subtracted). */
async function measured(c: Cluster, op: Op, seconds: number, idle: Record<string, number>) {
  const { lat, seconds: s, cpuMsPerOp } = await measuredRaw(c, op, seconds, idle);
  return { op, clients: c.clients.length, seconds: r2(s), ops: lat.length, opsPerSec: Math.round(lat.length / s), latencyMs: dist(lat), cpuMsPerOp };
}

// ---- profile: members under load ----------------------------------------------------------------

async function profile(): Promise<void> {
  const clients = Number(flags.clients ?? 16);
  const seconds = Number(flags.seconds ?? 10);
  const warmup = Number(flags.warmup ?? 3);
  const op = String(flags.op ?? 'put') as Op;
  const c = await startCluster({ root: String(flags.root ?? tmpdir()), clients, cpuProf: true });
  try {
    await load(c.clients, 'put', warmup);
    // Idle CPU (heartbeats, timers) is subtracted from the load's CPU.
    const idle = await idleRates(c.pids, 3000);
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 1000 });
    await session.post('Profiler.start');
    const from = monoUs();
    const m = await measured(c, op, seconds, idle);
    const to = monoUs();
    const { profile: clientProfile } = await session.post('Profiler.stop');
    session.disconnect();
    writeFileSync(join(c.profDir, 'client.cpuprofile'), JSON.stringify(clientProfile));
    print({ kind: 'load', ...m, leader: c.leader, idleCpuMsPerS: Object.fromEntries(Object.entries(idle).map(([k, v]) => [k, Math.round(v)])), window: { from, to }, note: 'CPU per op measured with the profilers on (they cost CPU themselves)' });
    const byPid = new Map(c.members.map((mm) => [mm.child.pid!, mm.id]));
    await Promise.all(c.clients.map((cl) => cl.close()));
    for (const mm of c.members) mm.child.kill('SIGTERM');
    await Promise.all(c.members.map((mm) => mm.exited));
    // Default names are CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is the main thread.
    const named = readdirSync(c.profDir).flatMap((name) => {
      if (name === 'client.cpuprofile') return [{ name, id: 'client' }];
      const mm = /^CPU\.\d+\.\d+\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(name);
      const id = mm && mm[2] === '0' ? byPid.get(Number(mm[1])) : undefined;
      return id ? [{ name, id }] : [];
    });
    for (const { name, id } of named.sort((a, b) => a.id.localeCompare(b.id))) {
      const role = id === 'client' ? 'client' : id === c.leader ? 'leader' : 'follower';
      const p = JSON.parse(readFileSync(join(c.profDir, name), 'utf8')) as CpuProfile;
      print({ kind: 'profile', process: id, role, op, clients, ...analyze(p, { from, to, top: Number(flags.top ?? 25) }) });
    }
    if (flags.keep) {
      const keep = resolve(String(flags.keep));
      mkdirSync(keep, { recursive: true });
      for (const { name, id } of named) writeFileSync(join(keep, `${id}.cpuprofile`), readFileSync(join(c.profDir, name)));
      print({ kind: 'kept', dir: keep, window: { from, to }, idleWindow: { from: from - 3_100_000, to: from - 100_000 }, leader: c.leader });
    }
  } finally {
    await c.stop();
  }
}

// ---- breakdown: one client, without profilers -----------------------------------------------------

/**
 * Where a 1-client put's latency goes, by difference, on clusters without profilers:
 *   stale get  = the API round trip (client → broker → member → broker → client) and its CPU
 *   get        = + a ReadIndex heartbeat round to the followers (no disk)
 *   put, tmpfs = + the append round (leader persist, append, follower persist, ack, apply), fsync ~free
 *   put, disk  = + the real fdatasyncs
 * Both clusters run at once (idle, one is ~15% of a core) and take turns in short slices, so that the
 * machine's changing load hits both alike; latencies are pooled per (data root, operation).
 */
async function breakdown(): Promise<void> {
  const rounds = Number(flags.rounds ?? 10);
  const slice = Number(flags.slice ?? 1);
  // disk: the data on this disk; tmpfs: on /dev/shm; one-server: on disk, every member and the client
  // connected to the same broker server (no route hops; otherwise they land on random servers).
  const variants = String(flags.variants ?? 'disk,tmpfs').split(',');
  const clusters: [string, Cluster][] = [];
  try {
    for (const v of variants) {
      if (!['disk', 'tmpfs', 'one-server'].includes(v)) throw new Error(`unknown variant ${v} (disk, tmpfs, one-server)`);
      const root = v === 'tmpfs' ? '/dev/shm' : String(flags.root ?? tmpdir());
      clusters.push([v, await startCluster({ root, clients: 1, cpuProf: false, oneServer: v === 'one-server' })]);
    }
    for (const [, c] of clusters) await load(c.clients, 'put', 2);
    const idle = Object.fromEntries(await Promise.all(clusters.map(async ([label, c]) => [label, await idleRates(c.pids, 3000)] as const)));
    const topology = Object.fromEntries(await Promise.all(clusters.map(async ([label, c]) => [label, { leader: c.leader, ...(await c.topology()) }] as const)));
    const ops: Op[] = ['stale', 'get', 'put'];
    const lat = new Map<string, number[]>();
    const cpu = new Map<string, Record<string, number>[]>();
    for (let round = 1; round <= rounds; round++) {
      for (const op of ops) {
        for (const [label, c] of round % 2 ? clusters : [...clusters].reverse()) {
          const m = await measuredRaw(c, op, slice, idle[label]!);
          const k = `${op}@${label}`;
          lat.set(k, [...(lat.get(k) ?? []), ...m.lat]);
          cpu.set(k, [...(cpu.get(k) ?? []), m.cpuMsPerOp]);
        }
      }
    }
    const med = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return r2(s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2);
    };
    const summary: Record<string, object> = {};
    for (const [k, l] of lat) {
      const cs = cpu.get(k)!;
      summary[k] = { latencyMs: dist(l), cpuMsPerOp: Object.fromEntries(Object.keys(cs[0]!).map((p) => [p, med(cs.map((x) => x[p]!))])) };
    }
    const p50 = (k: string) => (summary[k] as { latencyMs: { p50: number } } | undefined)?.latencyMs.p50 ?? NaN;
    print({
      kind: 'breakdown', rounds, sliceSeconds: slice, loadavg1: +loadavg()[0]!.toFixed(2), ...summary,
      derivedP50Ms: {
        apiRoundTrip: p50('stale@disk'),
        readIndexRound: r2(p50('get@disk') - p50('stale@disk')),
        appendRoundWithoutFsync: r2(p50('put@tmpfs') - p50('stale@tmpfs')),
        fsync: r2(p50('put@disk') - p50('put@tmpfs')),
        oneServerSavesOnPut: r2(p50('put@disk') - p50('put@one-server')),
      },
      idleCpuMsPerS: Object.fromEntries(Object.entries(idle).map(([l, r]) => [l, Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]))])),
      topology,
    });
  } finally {
    for (const [, c] of clusters) await c.stop();
  }
}

// ---- trace: timestamps inside the members, per write ----------------------------------------------

/**
 * Loaded into each member with --import (after tsx): wraps prototypes of the member's own classes,
 * no source change. Records, with epoch timestamps (performance.timeOrigin + now, comparable across
 * processes): API request handling, every persist(), the leader's append sends and first acks, the
 * follower's append receipt and answer. Written as JSON to $SC_TRACE_DIR/<member>.json at exit.
 */
const TRACE_PRELOAD = `
import { writeFileSync } from 'node:fs';
import { ClusterServer } from '${join(ROOT, 'actors/cluster-server.ts')}';
import { NatsTransport } from '${join(ROOT, 'actors/nats-transport.ts')}';
import { DiskRaftStorage } from '${join(ROOT, 'src/storage/raft-storage.ts')}';
import { RaftNode } from '${join(ROOT, 'actors/node.ts')}';
const now = () => performance.timeOrigin + performance.now();
const rec = { handle: [], persist: [], appendRound: [], followerAppend: [], apply: [] };
const apply = RaftNode.prototype.apply;
RaftNode.prototype.apply = function (e) {
  rec.apply.push([now(), e.index]);
  return apply.call(this, e);
};
const sentAt = new Map();
let recv = null;
const handle = ClusterServer.prototype.handle;
ClusterServer.prototype.handle = async function (m) {
  const t = now();
  try { return await handle.call(this, m); } finally { rec.handle.push([t, now() - t]); }
};
const persist = DiskRaftStorage.prototype.persist;
DiskRaftStorage.prototype.persist = function (batch) {
  const t = now();
  const entries = batch.entries?.length ?? 0;
  return persist.call(this, batch).finally(() => rec.persist.push([t, now() - t, entries]));
};
const send = NatsTransport.prototype.send;
NatsTransport.prototype.send = function (msg) {
  const t = now();
  if (msg.type === 'append' && msg.entries.length) {
    const last = msg.entries[msg.entries.length - 1].index;
    if (!sentAt.has(last)) sentAt.set(last, t);
  } else if (msg.type === 'appendResp' && recv && msg.success && msg.matchIndex >= recv.last) {
    rec.followerAppend.push([recv.t, t - recv.t]);
    recv = null;
  }
  return send.call(this, msg);
};
const accept = NatsTransport.prototype.accept;
NatsTransport.prototype.accept = function (data) {
  const t = now();
  const msg = accept.call(this, data);
  if (msg?.type === 'append' && msg.entries.length) recv = { t, last: msg.entries[msg.entries.length - 1].index };
  else if (msg?.type === 'appendResp' && msg.success) {
    for (const [index, at] of sentAt) if (index <= msg.matchIndex) { rec.appendRound.push([at, t - at]); sentAt.delete(index); }
  }
  return msg;
};
process.on('exit', () => writeFileSync(process.env.SC_TRACE_DIR + '/' + process.env.SC_TRACE_MEMBER + '.json', JSON.stringify(rec)));
`;

/**
 * One client, sequential puts, with the members traced: where each write's time goes, measured in
 * the same writes (so the machine's load shifts every part alike):
 *   client − leader handling   = the two client hops (client → broker → leader and back) + client CPU
 *   append round − follower    = the two replication hops (leader → broker → follower and back)
 *   follower persist           = the follower's WAL append + fdatasync (before it answers)
 *   leader persist             = runs in parallel with the round; only its excess over it counts
 *   the rest                   = CPU and event-loop turns in the leader and follower
 */
async function trace(): Promise<void> {
  const seconds = Number(flags.seconds ?? 10);
  const dir = await mkdtemp(join(tmpdir(), 'sc-trace-'));
  const preload = join(dir, 'trace-preload.mjs');
  writeFileSync(preload, TRACE_PRELOAD);
  const c = await startCluster({ root: String(flags.root ?? tmpdir()), clients: 1, cpuProf: false, oneServer: flags['one-server'] === true, preload, env: { SC_TRACE_DIR: dir } })
    .catch(async (err) => {
      await rm(dir, { recursive: true, force: true });
      throw err;
    });
  let from = 0;
  let to = 0;
  const lat: number[] = [];
  try {
    await load(c.clients, 'put', 2);
    from = performance.timeOrigin + performance.now();
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const t0 = performance.now();
      await c.clients[0]!.put(`bench/${keyCounter++ % 1000}`, VALUE);
      lat.push(performance.now() - t0);
    }
    to = performance.timeOrigin + performance.now();
    print({ kind: 'trace-topology', leader: c.leader, ...(await c.topology()) });
  } finally {
    await c.stop(); // members exit cleanly and write their traces
  }
  type Rec = Record<'handle' | 'persist' | 'appendRound' | 'followerAppend' | 'apply', number[][]>;
  let recs: Record<string, Rec>;
  try {
    recs = Object.fromEntries(['n1', 'n2', 'n3'].map((id) => [id, JSON.parse(readFileSync(join(dir, `${id}.json`), 'utf8')) as Rec]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const inWindow = (xs: number[][]) => xs.filter((x) => x[0]! >= from && x[0]! <= to).sort((a, b) => a[0]! - b[0]!);
  const leader = recs[c.leader]!;
  const followers = Object.entries(recs).filter(([id]) => id !== c.leader).map(([, r]) => r);
  const handles = inWindow(leader.handle);
  const within = (xs: number[][], a: number, b: number) => xs.find((x) => x[0]! >= a && x[0]! <= b);
  // Per write (one client: the i-th request handled is the i-th put), every part of its latency;
  // the parts add up to the client's latency exactly. The leader sends its append before its own
  // fsync (thesis §10.2.1, actors/node.ts): the commit waits for the later of its persist and the
  // first follower's answer, so only the leader persist's excess over the round is on the path.
  const perOp: Record<string, number>[] = [];
  let leaderPersistLater = 0;
  const leaderPersistHidden: number[] = [];
  for (let i = 0; i < Math.min(handles.length, lat.length); i++) {
    const [t, h] = handles[i]! as [number, number];
    const round = within(leader.appendRound, t, t + h);
    const pl = within(leader.persist.filter((x) => x[2]! > 0), t, t + h);
    if (!pl || !round) continue;
    const [rt, r] = round as [number, number];
    // The follower whose answer came first: its append processing ends earliest.
    const fas = followers.map((f) => ({ f, fa: within(f.followerAppend, rt, rt + r) })).filter((x) => x.fa);
    const first = fas.sort((a, b) => a.fa![0]! + a.fa![1]! - (b.fa![0]! + b.fa![1]!))[0];
    if (!first) continue;
    const [ft, fd] = first.fa! as [number, number];
    const pf = within(first.f.persist.filter((x) => x[2]! > 0), ft, ft + fd);
    const followerPersist = pf?.[1] ?? 0;
    const leaderPersistEnd = pl[0]! + pl[1]!;
    const ackAt = rt + r;
    const excess = Math.max(0, leaderPersistEnd - ackAt);
    if (excess > 0) leaderPersistLater++;
    leaderPersistHidden.push(pl[1]!);
    const committedAt = Math.max(leaderPersistEnd, ackAt);
    // The commit-only WAL record is written in the background (not awaited before apply and reply).
    const applied = within(leader.apply, committedAt, t + h);
    const appliedAt = applied ? applied[0]! : committedAt;
    perOp.push({
      total: lat[i]!,
      clientSide: lat[i]! - h,
      leaderBeforeSend: rt - t,
      replicationHops: r - fd,
      followerPersist,
      followerOther: fd - followerPersist,
      leaderPersistExcess: excess,
      leaderCommitToApply: appliedAt - committedAt,
      leaderApplyToReply: t + h - appliedAt,
    });
  }
  if (!perOp.length && handles.length) {
    const [t, h] = handles[0]! as [number, number];
    print({ kind: 'trace-debug', handle: handles[0], persist: leader.persist.filter((x) => x[0]! > t - 50 && x[0]! < t + h + 50), appendRound: leader.appendRound.filter((x) => x[0]! > t - 50 && x[0]! < t + h + 50) });
  }
  const keys = Object.keys(perOp[0] ?? {});
  const col = (k: string) => perOp.map((o) => o[k]!);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const med = (xs: number[]) => dist(xs).p50;
  print({
    kind: 'trace', seconds, ops: lat.length, matched: perOp.length, loadavg1: +loadavg()[0]!.toFixed(2),
    clientPutMs: dist(lat),
    leaderPersistMs: leaderPersistHidden.length ? dist(leaderPersistHidden) : null,
    leaderPersistLaterThanFirstAckPct: +((100 * leaderPersistLater) / Math.max(1, perOp.length)).toFixed(1),
    partsP50Ms: Object.fromEntries(keys.map((k) => [k, med(col(k))])),
    partsMeanMs: Object.fromEntries(keys.map((k) => [k, r2(mean(col(k)))])),
    // Median over writes of each part's share of that write's latency.
    partsShareP50Pct: Object.fromEntries(keys.filter((k) => k !== 'total').map((k) => [k, +(100 * med(perOp.map((o) => o[k]! / o.total!))).toFixed(1)])),
    // The writes near the median latency (45th-55th percentile): their mean parts.
    medianWritesMs: (() => {
      const s = [...perOp].sort((a, b) => a.total! - b.total!);
      const mid = s.slice(Math.floor(s.length * 0.45), Math.ceil(s.length * 0.55));
      return Object.fromEntries(keys.map((k) => [k, r2(mean(mid.map((o) => o[k]!)))]));
    })(),
    legend: {
      clientSide: 'client → broker → leader and back, and the client\'s own CPU (client latency − leader handling)',
      leaderBeforeSend: 'leader: request decode, propose, step, encode until the append is sent',
      replicationHops: 'leader → broker → follower and back (append round − follower processing)',
      followerPersist: 'the first-answering follower\'s WAL append + fdatasync',
      followerOther: 'that follower\'s CPU: decode, step, encode (append processing − persist)',
      leaderPersistExcess: 'how much longer the leader\'s own persist (running in parallel) took than the round',
      leaderCommitToApply: 'leader: from the answer (or its own persist, if later) to applying the entry: event-loop turns, step, commit',
      leaderApplyToReply: 'leader: apply, resolve the request, encode and hand the reply to NATS',
    },
  });
}

// ---- fsync on this disk --------------------------------------------------------------------------

async function fsync(): Promise<void> {
  const n = Number(flags.n ?? 400);
  const root = await mkdtemp(join(String(flags.dir ?? tmpdir()), 'sc-fsync-'));
  try {
    // Raw: append 300 B, fdatasync; the write and the sync timed apart.
    const fh = await open(join(root, 'raw.log'), 'a');
    const buf = Buffer.alloc(300, 7);
    const write: number[] = [];
    const sync: number[] = [];
    for (let i = 0; i < n; i++) {
      const a = performance.now();
      await fh.write(buf);
      const b = performance.now();
      await fh.datasync();
      write.push(b - a);
      sync.push(performance.now() - b);
    }
    await fh.close();
    print({ kind: 'fsync', what: 'raw write(300 B)', dir: root, ...dist(write) });
    print({ kind: 'fsync', what: 'raw fdatasync after a 300 B append', dir: root, ...dist(sync) });

    // Two at once on two files (a local cluster's leader and follower share this disk).
    const f1 = await open(join(root, 'a.log'), 'a');
    const f2 = await open(join(root, 'b.log'), 'a');
    const both: number[] = [];
    for (let i = 0; i < n; i++) {
      await Promise.all([f1.write(buf), f2.write(buf)]);
      const t = performance.now();
      await Promise.all([f1.datasync(), f2.datasync()]);
      both.push(performance.now() - t);
    }
    await f1.close();
    await f2.close();
    print({ kind: 'fsync', what: 'two fdatasyncs at once on two files (until both done)', ...dist(both) });

    // What a member waits for: DiskRaftStorage.persist of one 256 B entry (frame, write, fdatasync).
    const storage = new DiskRaftStorage({ fs: new NodeFileSystem(), dir: join(root, 'raft') });
    await storage.load();
    await storage.persist({ hardState: { term: 1, vote: 'n1', commit: 0 } });
    const data = new Uint8Array(256).fill(7);
    const persist: number[] = [];
    const commitOnly: number[] = [];
    for (let i = 1; i <= n; i++) {
      let t = performance.now();
      await storage.persist({ entries: [{ index: i, term: 1, type: EntryType.Command, data }] });
      persist.push(performance.now() - t);
      // The leader's next persist after the commit: only the commit record, no fsync.
      t = performance.now();
      await storage.persist({ hardState: { term: 1, vote: 'n1', commit: i } });
      commitOnly.push(performance.now() - t);
    }
    await storage.close();
    print({ kind: 'fsync', what: 'DiskRaftStorage.persist(1 entry of 256 B)', ...dist(persist) });
    print({ kind: 'fsync', what: 'DiskRaftStorage.persist(commit only, no fsync)', ...dist(commitOnly) });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

// ---- NATS hop latency ------------------------------------------------------------------------------

async function natsHops(): Promise<void> {
  const n = Number(flags.n ?? 3000);
  const dir = await mkdtemp(join(tmpdir(), 'sc-nats-hop-'));
  const credentials = loadOrCreateCredentials(join(dir, 'credentials.json'));
  const nats = await startNatsCluster({ size: 3, dir: join(dir, 'nats'), credentials });
  const { user, pass } = credentials.member;
  const conns = [];
  try {
    const a = await connect(natsConnectOptions([nats.urls[0]!], 'hop-a', user, pass));
    const same = await connect(natsConnectOptions([nats.urls[0]!], 'hop-same', user, pass));
    const cross = await connect(natsConnectOptions([nats.urls[1]!], 'hop-cross', user, pass));
    conns.push(a, same, cross);
    same.subscribe('hop.same', { callback: (_e, m) => m.respond(m.data) });
    cross.subscribe('hop.cross', { callback: (_e, m) => m.respond(m.data) });
    await Promise.all([same.flush(), cross.flush()]);
    await pause(200); // interest propagates over the routes
    const payload = new Uint8Array(300).fill(1);
    for (const subject of ['hop.same', 'hop.cross']) {
      for (let i = 0; i < 300; i++) await a.request(subject, payload, { timeout: 2000 }); // warm-up
      const rtt: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        await a.request(subject, payload, { timeout: 2000 });
        rtt.push(performance.now() - t);
      }
      print({ kind: 'nats', what: `request/reply RTT, 300 B, ${subject === 'hop.same' ? 'both on one server' : 'across a route'}`, ...dist(rtt) });
    }
    // A plain publish → subscriber on another connection, as Raft messages travel (one hop, no reply).
    const oneWay: number[] = [];
    let sentAt = 0;
    let got: () => void = () => {};
    cross.subscribe('hop.oneway', { callback: () => { oneWay.push(performance.now() - sentAt); got(); } });
    await cross.flush();
    await pause(200);
    for (let i = 0; i < n; i++) {
      const done = new Promise<void>((r) => (got = r));
      sentAt = performance.now();
      a.publish('hop.oneway', payload);
      await done;
    }
    print({ kind: 'nats', what: 'one-way publish → subscriber, 300 B, across a route (same process measures both ends)', ...dist(oneWay) });
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

switch (command) {
  case 'profile':
    await profile();
    break;
  case 'breakdown':
    await breakdown();
    break;
  case 'trace':
    await trace();
    break;
  case 'fsync':
    await fsync();
    break;
  case 'nats':
    await natsHops();
    break;
  case 'analyze': {
    const file = positional[0];
    if (!file) throw new Error('analyze FILE.cpuprofile');
    const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    print({ kind: 'profile', file, ...analyze(p, { from: flags.from ? Number(flags.from) : undefined, to: flags.to ? Number(flags.to) : undefined, top: Number(flags.top ?? 25) }) });
    break;
  }
  default:
    throw new Error(`unknown command ${command} (profile | breakdown | trace | fsync | nats | analyze)`);
}
