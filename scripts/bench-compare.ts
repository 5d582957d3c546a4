/**
 * Comparison benchmark: the same closed-loop workload against our 3-member cluster, a 3-member etcd
 * cluster and a 3-replica NATS JetStream KV bucket, all on loopback, fsync on where the system does it.
 *
 *   npm run bench -- [--compare etcd,jetstream] [--rounds 3] [--seconds 5] [--warmup 2]
 *                    [--workloads put:1,put:16,put:64,get:16] [--failover 2] [--keys 1000] [--value-bytes 256]
 *                    [--etcd-election-ms 1000 --etcd-heartbeat-ms 100]
 * `ours` always runs; --compare adds etcd, jetstream and the variants ours-tmpfs, etcd-tmpfs (data on
 * /dev/shm: fsync free) and etcd-fast (etcd with our election timing); see makeSystems(). Without an
 * etcd binary (Debian: etcd-server) the etcd systems are skipped with a `skipped` line.
 * Results and how to read them: docs/PERFORMANCE.md.
 *
 * Each round starts every system fresh, one after the other (never two at once: they would share the
 * two cores), warms it up, runs every workload and then `--failover` kill -9 rounds, and stops it.
 * Rounds interleave the systems so that drift in the machine's load hits all of them alike.
 *
 * Output, JSON lines:
 *   {kind:'run', round, system, workload, clients, opsPerSec, p50, p90, p99, max, errors, rssMB,
 *    serverCpuMsPerOp (CPU of the server processes per op, their idle rate subtracted), idleCpuPct, clientCpuMsPerOp, loadavg1}
 *   {kind:'failover', round, system, windowMs, ...}                       one per kill
 *   {kind:'result', system, workload, clients, ...}                       medians over rounds
 *   {kind:'failoverResult', system, medianMs, windowsMs}
 *   {kind:'ratios', ...}       ours/<each other system> (and ours-tmpfs/jetstream, ours-tmpfs/etcd-tmpfs):
 *                              the median of the per-round ratios of ops/s, p50 and p99, and of failover medians
 *
 * Workloads: `put` writes a 256 B value to one of 1000 keys (round-robin), `get` is a linearizable
 * read of one of them (ours: ReadIndex on the leader; etcd: the default linearizable Range;
 * JetStream: a KV get through the stream leader, allow_direct off — the closest JetStream has,
 * served by the leader without a quorum round). Latencies are per operation, in ms.
 *
 * Failover window: under light load (one closed-loop writer), kill -9 the leader (ours: the Raft
 * leader member; etcd: the leader member; JetStream: the server leading the KV stream), then a probe
 * issues a write every 20 ms; the window is from the kill to the first acknowledged probe. The etcd
 * and JetStream probes connect to the survivors only (their server-side failover, without client
 * reconnection); ours goes through its broker, which stays up, and finds the new leader by hints.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { connect, type KV, type NatsConnection } from 'nats';
import { ClusterClient } from '../src/client.ts';
import { parseFlags } from '../src/config.ts';
import { startLocalCluster, type LocalCluster } from '../src/local-cluster.ts';
import { freePorts, OrphanGuard } from '../src/nats/broker.ts';
import { procStat } from './proc-stat.ts';
import { DEFAULT_ELECTION_TIMEOUT_MS } from '../src/raft/state.ts';

// ---- settings ------------------------------------------------------------------------------------

const flags = parseFlags(process.argv.slice(2));
const compare = String(flags.compare ?? 'etcd,jetstream').split(',').map((s) => s.trim()).filter(Boolean);
const rounds = Number(flags.rounds ?? 3);
const seconds = Number(flags.seconds ?? 5);
const warmupSeconds = Number(flags.warmup ?? 2);
const failoverRounds = Number(flags.failover ?? 2);
const keys = Number(flags.keys ?? 1000);
const value = 'x'.repeat(Number(flags['value-bytes'] ?? 256));
const workloads = String(flags.workloads ?? 'put:1,put:16,put:64,get:16').split(',').map((w) => {
  const [op, n] = w.split(':');
  if ((op !== 'put' && op !== 'get') || !(Number(n) > 0)) throw new Error(`bad workload ${w} (want put:N or get:N)`);
  return { op: op as 'put' | 'get', clients: Number(n) };
});
const etcdElectionMs = Number(flags['etcd-election-ms'] ?? 1000);
const etcdHeartbeatMs = Number(flags['etcd-heartbeat-ms'] ?? 100);
const maxClients = Math.max(...workloads.map((w) => w.clients), 16);
const HOST = '127.0.0.1';

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const print = (o: object) => console.log(JSON.stringify(o));

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return +sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(2);
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const round2 = (x: number) => +x.toFixed(2);


function which(bin: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

// ---- processes we start (etcd, nats-server for JetStream) ------------------------------------------

const guard = new OrphanGuard();
const live = new Set<ServerProc>();
process.on('exit', () => {
  for (const p of live) p.child?.kill('SIGKILL');
});

class ServerProc {
  child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  constructor(readonly name: string, private readonly bin: string, private readonly args: string[], private readonly logFile: string) {}

  get pid(): number {
    return this.child?.pid ?? 0;
  }
  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }
  start(): void {
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.bin, this.args, { stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    child.on('error', () => {});
    const pid = child.pid!;
    guard.add(pid);
    live.add(this);
    this.exited = new Promise((res) => child.once('exit', () => {
      guard.remove(pid);
      live.delete(this);
      res();
    }));
    this.child = child;
  }
  async kill(signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL', graceMs = 5000): Promise<void> {
    if (!this.running) return this.exited;
    this.child!.kill(signal);
    const t = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

// ---- the systems -----------------------------------------------------------------------------------

interface Ops {
  put(key: string, value: string): Promise<unknown>;
  get(key: string): Promise<unknown>;
  close(): Promise<void>;
}

interface System {
  readonly name: string;
  start(): Promise<void>;
  /** A client connected to every server (the workload's clients). */
  client(): Promise<Ops>;
  /** Server processes, by group (RSS and CPU are reported per group). */
  pids(): Record<string, number[]>;
  /** Until every member runs and one leader is known to all; returns the leader's index. */
  healthy(timeoutMs?: number): Promise<number>;
  kill9(i: number): Promise<void>;
  restart(i: number): Promise<void>;
  /** A client for the failover probe: the survivors when `avoid` is given (etcd, JetStream). */
  probeClient(avoid: number): Promise<Ops>;
  stop(): Promise<void>;
}

class Ours implements System {
  private dir = '';
  private c!: LocalCluster;
  private admin!: ClusterClient;

  /** `root`: where the data directories go (a tmpfs root makes fsync free: the `-tmpfs` variants). */
  constructor(readonly name = 'ours', private readonly root = tmpdir()) {}

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(this.root, 'sc-cmp-ours-'));
    this.c = await startLocalCluster({ dir: this.dir, logLevel: 'warn' });
    this.admin = await ClusterClient.connect({ ...this.c.clientOptions(), quorumWaitMs: 10_000 });
    await this.healthy(30_000);
  }
  async client(): Promise<Ops> {
    const cl = await ClusterClient.connect({ ...this.c.clientOptions(), quorumWaitMs: 10_000 });
    return { put: (k, v) => cl.put(k, v), get: (k) => cl.get(k), close: () => cl.close() };
  }
  probeClient(): Promise<Ops> {
    return this.client();
  }
  pids() {
    return { members: this.c.members.map((m) => m.pid ?? 0), broker: this.c.nats.servers.map((s) => s.pid) };
  }
  async healthy(timeoutMs = 30_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const all = await this.admin.status();
        const leaders = all.filter((s) => s.role === 'leader');
        if (all.length >= this.c.members.length && leaders.length === 1 && all.every((s) => s.leader === leaders[0]!.id)) {
          const lead = leaders[0]!;
          // Everyone caught up (a restarted member replays and catches up before the next kill).
          if (all.every((s) => lead.commitIndex - s.appliedIndex < 50)) return this.c.members.findIndex((m) => m.id === lead.id);
        }
      } catch {
        // members starting
      }
      if (performance.now() > deadline) throw new Error('ours: no stable leader');
      await pause(50);
    }
  }
  kill9(i: number): Promise<void> {
    return this.c.members[i]!.kill9();
  }
  async restart(i: number): Promise<void> {
    this.c.members[i]!.start();
  }
  async stop(): Promise<void> {
    await this.admin?.close().catch(() => {});
    await this.c?.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

class Etcd implements System {
  private dir = '';
  private procs: ServerProc[] = [];
  private clientUrls: string[] = [];
  private Etcd3!: typeof import('etcd3').Etcd3;

  constructor(
    private readonly bin: string,
    readonly name = 'etcd',
    private readonly root = tmpdir(),
    private readonly electionMs = etcdElectionMs,
    private readonly heartbeatMs = etcdHeartbeatMs,
  ) {}

  async start(): Promise<void> {
    this.Etcd3 = (await import('etcd3')).Etcd3;
    this.dir = await mkdtemp(join(this.root, 'sc-cmp-etcd-'));
    const ports = await freePorts(6);
    const names = ['e1', 'e2', 'e3'];
    const peer = (i: number) => `http://${HOST}:${ports[i * 2 + 1]}`;
    this.clientUrls = names.map((_, i) => `http://${HOST}:${ports[i * 2]}`);
    const initial = names.map((n, i) => `${n}=${peer(i)}`).join(',');
    this.procs = names.map((n, i) => new ServerProc(n, this.bin, [
      '--name', n, '--data-dir', join(this.dir, n),
      '--listen-client-urls', this.clientUrls[i]!, '--advertise-client-urls', this.clientUrls[i]!,
      '--listen-peer-urls', peer(i), '--initial-advertise-peer-urls', peer(i),
      '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', 'sc-bench',
      '--heartbeat-interval', String(this.heartbeatMs), '--election-timeout', String(this.electionMs),
      '--logger', 'zap', '--log-level', 'warn',
    ], join(this.dir, `${n}.log`)));
    for (const p of this.procs) p.start();
    await this.healthy(30_000);
  }
  private make(urls: string[]): Ops {
    const cl = new this.Etcd3({ hosts: urls, dialTimeout: 5000, defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }) });
    return {
      put: (k, v) => cl.put(k).value(v).exec(),
      get: (k) => cl.get(k).string(),
      close: async () => cl.close(),
    };
  }
  async client(): Promise<Ops> {
    return this.make(this.clientUrls);
  }
  async probeClient(avoid: number): Promise<Ops> {
    return this.make(this.clientUrls.filter((_, i) => i !== avoid));
  }
  pids() {
    return { servers: this.procs.map((p) => p.pid) };
  }
  private async status(i: number): Promise<{ id: string; leader: string; applied: number } | null> {
    try {
      const res = await fetch(`${this.clientUrls[i]}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
      if (!res.ok) return null;
      const j = (await res.json()) as { header: { member_id: string }; leader?: string; raftAppliedIndex?: string };
      return { id: j.header.member_id, leader: j.leader ?? '0', applied: Number(j.raftAppliedIndex ?? 0) };
    } catch {
      return null;
    }
  }
  async healthy(timeoutMs = 30_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const all = await Promise.all(this.procs.map((_, i) => this.status(i)));
      if (all.every((s) => s !== null)) {
        const st = all as { id: string; leader: string; applied: number }[];
        const leader = st[0]!.leader;
        const li = st.findIndex((s) => s.id === leader);
        const maxApplied = Math.max(...st.map((s) => s.applied));
        if (leader !== '0' && li >= 0 && st.every((s) => s.leader === leader) && st.every((s) => maxApplied - s.applied < 50)) return li;
      }
      const dead = this.procs.find((p) => !p.running);
      if (dead || performance.now() > deadline) {
        const log = dead ? readFileSync(join(this.dir, `${dead.name}.log`), 'utf8').split('\n').slice(-5).join('\n') : '';
        throw new Error(dead ? `etcd: ${dead.name} exited: ${log}` : 'etcd: no stable leader');
      }
      await pause(50);
    }
  }
  kill9(i: number): Promise<void> {
    return this.procs[i]!.kill('SIGKILL');
  }
  async restart(i: number): Promise<void> {
    this.procs[i]!.start(); // the data dir exists: the --initial-* flags are ignored
  }
  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.kill('SIGTERM')));
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

const KV_BUCKET = 'bench';

class JetStream implements System {
  readonly name = 'jetstream';
  private dir = '';
  private procs: ServerProc[] = [];
  private urls: string[] = [];
  private admin: NatsConnection | null = null;

  constructor(private readonly bin: string) {}

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'sc-cmp-js-'));
    const ports = await freePorts(9);
    const names = ['js1', 'js2', 'js3'];
    this.urls = names.map((_, i) => `nats://${HOST}:${ports[i * 3]}`);
    this.procs = names.map((n, i) => {
      const routes = names.map((_, j) => `"nats-route://${HOST}:${ports[j * 3 + 1]}"`).filter((_, j) => j !== i);
      const conf = join(this.dir, `${n}.conf`);
      mkdirSync(join(this.dir, n), { recursive: true });
      // Same limits as our broker (1 MB payloads); no auth: a private cluster on loopback.
      writeFileSync(conf, [
        `server_name: ${n}`, `host: ${HOST}`, `port: ${ports[i * 3]}`, `http_port: ${ports[i * 3 + 2]}`, 'max_payload: 1MB',
        `jetstream { store_dir: "${join(this.dir, n)}", max_memory_store: 256MB, max_file_store: 4GB }`,
        `cluster { name: sc-bench-js, host: ${HOST}, port: ${ports[i * 3 + 1]}, routes: [${routes.join(', ')}] }`,
      ].join('\n') + '\n');
      return new ServerProc(n, this.bin, ['-c', conf], join(this.dir, `${n}.log`));
    });
    for (const p of this.procs) p.start();
    this.admin = await connect(this.connectOptions(this.urls));
    // The bucket: one value per key, three replicas (created once the meta leader exists).
    const deadline = performance.now() + 30_000;
    for (;;) {
      try {
        await this.admin.jetstream().views.kv(KV_BUCKET, { history: 1, replicas: 3, allow_direct: false });
        break;
      } catch (err) {
        if (performance.now() > deadline) throw err;
        await pause(200);
      }
    }
    await this.healthy(30_000);
  }
  private connectOptions(servers: string[]) {
    // As our members and clients connect (src: natsConnectOptions): reconnect forever, quickly.
    return { servers, maxReconnectAttempts: -1, reconnectTimeWait: 100, reconnectJitter: 100, pingInterval: 2000, maxPingOut: 2, waitOnFirstConnect: true, timeout: 5000 };
  }
  private async make(urls: string[]): Promise<Ops> {
    const nc = await connect(this.connectOptions(urls));
    const kv: KV = await nc.jetstream({ timeout: 5000 }).views.kv(KV_BUCKET, { history: 1, replicas: 3, allow_direct: false });
    return {
      put: (k, v) => kv.put(k, v),
      get: (k) => kv.get(k),
      close: () => nc.close(),
    };
  }
  client(): Promise<Ops> {
    return this.make(this.urls);
  }
  probeClient(avoid: number): Promise<Ops> {
    return this.make(this.urls.filter((_, i) => i !== avoid));
  }
  pids() {
    return { servers: this.procs.map((p) => p.pid) };
  }
  async healthy(timeoutMs = 30_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const jsm = await this.admin!.jetstreamManager({ timeout: 1000 });
        const si = await jsm.streams.info(`KV_${KV_BUCKET}`);
        const leader = si.cluster?.leader;
        const replicas = si.cluster?.replicas ?? [];
        const li = this.procs.findIndex((p) => p.name === leader);
        if (li >= 0 && replicas.length === 2 && replicas.every((r) => r.current && !r.offline)) return li;
      } catch {
        // no leader yet
      }
      if (performance.now() > deadline) throw new Error('jetstream: KV stream has no leader with current replicas');
      await pause(100);
    }
  }
  kill9(i: number): Promise<void> {
    return this.procs[i]!.kill('SIGKILL');
  }
  async restart(i: number): Promise<void> {
    this.procs[i]!.start();
  }
  async stop(): Promise<void> {
    await this.admin?.close().catch(() => {});
    await Promise.all(this.procs.map((p) => p.kill('SIGTERM')));
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

// ---- measuring -------------------------------------------------------------------------------------

function sample(sys: System) {
  const groups = sys.pids();
  const out: Record<string, { rss: number; cpuMs: number }> = {};
  for (const [g, pids] of Object.entries(groups)) {
    const st = pids.map(procStat).filter((s): s is { rss: number; cpuMs: number } => s !== null);
    out[g] = { rss: st.reduce((a, s) => a + s.rss, 0), cpuMs: st.reduce((a, s) => a + s.cpuMs, 0) };
  }
  return out;
}

let keyCounter = 0;

async function closedLoop(clients: Ops[], op: 'put' | 'get', secs: number) {
  const lat: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const end = performance.now() + secs * 1000;
  const loop = async (c: Ops) => {
    while (performance.now() < end) {
      const key = `bench/${keyCounter++ % keys}`;
      const t0 = performance.now();
      try {
        if (op === 'put') await c.put(key, value);
        else await c.get(key);
        lat.push(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(clients.map(loop));
  return { lat, errors, firstError, elapsed: (performance.now() - t0) / 1000 };
}

/** CPU the server processes burn with no load (heartbeats, timers), in ms per second, by group. */
async function idleCpu(sys: System, ms = 2000): Promise<Record<string, number>> {
  const a = sample(sys);
  const t = performance.now();
  await pause(ms);
  const b = sample(sys);
  const secs = (performance.now() - t) / 1000;
  return Object.fromEntries(Object.keys(b).map((g) => [g, (b[g]!.cpuMs - (a[g]?.cpuMs ?? 0)) / secs]));
}

async function measure(sys: System, clients: Ops[], op: 'put' | 'get', n: number, round: number, idle: Record<string, number>) {
  const before = sample(sys);
  const cpu0 = process.cpuUsage();
  const load = loadavg()[0]!;
  const { lat, errors, firstError, elapsed } = await closedLoop(clients.slice(0, n), op, seconds);
  const cpu = process.cpuUsage(cpu0);
  const after = sample(sys);
  lat.sort((a, b) => a - b);
  const ops = lat.length;
  const rssMB: Record<string, number> = {};
  const serverCpuMsPerOp: Record<string, number> = {};
  const idleCpuPct: Record<string, number> = {};
  for (const g of Object.keys(after)) {
    rssMB[g] = Math.round(after[g]!.rss / 2 ** 20);
    // Less the idle rate: at one client the heartbeats would otherwise dominate the figure.
    const busy = after[g]!.cpuMs - (before[g]?.cpuMs ?? 0) - (idle[g] ?? 0) * elapsed;
    serverCpuMsPerOp[g] = ops ? +(busy / ops).toFixed(3) : NaN;
    idleCpuPct[g] = +((idle[g] ?? 0) / 10).toFixed(1);
  }
  return {
    kind: 'run', round, system: sys.name, workload: op, clients: n, seconds: round2(elapsed), ops, opsPerSec: Math.round(ops / elapsed),
    p50: pct(lat, 50), p90: pct(lat, 90), p99: pct(lat, 99), max: pct(lat, 100), errors, ...(firstError ? { firstError } : {}),
    rssMB, serverCpuMsPerOp, idleCpuPct, clientCpuMsPerOp: ops ? +((cpu.user + cpu.system) / 1000 / ops).toFixed(3) : NaN, loadavg1: round2(load),
  };
}

async function failover(sys: System, round: number, k: number) {
  const victim = await sys.healthy(60_000);
  const light = await sys.client();
  const probe = await sys.probeClient(victim);
  await probe.put('failover/warm', String(k));
  let stopLight = false;
  const lightLoop = (async () => {
    for (let i = 0; !stopLight; i++) await light.put(`failover/light/${i % 100}`, value).catch(() => pause(10));
  })();
  await pause(500);
  const killedAt = performance.now();
  await sys.kill9(victim);
  const killMs = performance.now() - killedAt;
  let acked = -1;
  let attempts = 0;
  const pending: Promise<unknown>[] = [];
  const deadline = killedAt + 60_000;
  while (acked < 0 && performance.now() < deadline) {
    const n = attempts++;
    pending.push(probe.put('failover/probe', String(n)).then(() => {
      if (acked < 0) acked = performance.now() - killedAt;
    }, () => {}));
    await pause(20);
  }
  stopLight = true;
  await Promise.all(pending);
  await lightLoop;
  await sys.restart(victim);
  await sys.healthy(60_000);
  await Promise.all([light.close(), probe.close()]).catch(() => {});
  return { kind: 'failover', round, system: sys.name, victim, windowMs: Math.round(acked), attempts, killMs: Math.round(killMs) };
}

// ---- the run ---------------------------------------------------------------------------------------

const TMPFS = '/dev/shm';
/**
 * Systems by name. Besides the three of the comparison, variants for the notes:
 *   ours-tmpfs, etcd-tmpfs   data directories on tmpfs (/dev/shm): fsync costs nothing, the rest is equal
 *   etcd-fast                etcd with our election timing: election timeout 400 ms (etcd draws from
 *                            [T, 2T), i.e. 400–800 ms like ours) and heartbeat 50 ms (etcd refuses a
 *                            heartbeat above a fifth of the election timeout) instead of 100/1000
 */
function makeSystems(): { systems: (() => System)[]; skipped: object[] } {
  const systems: (() => System)[] = [() => new Ours()];
  const skipped: object[] = [];
  const etcd = which('etcd');
  for (const name of compare) {
    if (name.startsWith('etcd')) {
      if (!etcd) {
        skipped.push({ kind: 'skipped', system: name, reason: 'no etcd binary on PATH (Debian: apt-get install etcd-server)' });
        continue;
      }
      if (name === 'etcd') systems.push(() => new Etcd(etcd));
      else if (name === 'etcd-tmpfs') systems.push(() => new Etcd(etcd, name, TMPFS));
      else if (name === 'etcd-fast') systems.push(() => new Etcd(etcd, name, tmpdir(), DEFAULT_ELECTION_TIMEOUT_MS.min, 50));
      else throw new Error(`unknown system ${name}`);
    } else if (name === 'jetstream') {
      const bin = which('nats-server') ?? '/usr/sbin/nats-server';
      systems.push(() => new JetStream(bin));
    } else if (name === 'ours-tmpfs') systems.push(() => new Ours(name, TMPFS));
    else if (name !== 'ours') throw new Error(`unknown system ${name} (etcd, jetstream, ours-tmpfs, etcd-tmpfs, etcd-fast)`);
  }
  return { systems, skipped };
}

const { systems, skipped } = makeSystems();
for (const s of skipped) print(s);
const etcdVersion = which('etcd') ? spawnSync('etcd', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] : null;
const natsVersion = spawnSync(which('nats-server') ?? '/usr/sbin/nats-server', ['--version'], { encoding: 'utf8' }).stdout.trim();
print({
  kind: 'machine', cpus: cpus().length, cpuModel: cpus()[0]?.model, memGB: Math.round(totalmem() / 2 ** 30), node: process.version,
  etcd: etcdVersion, natsServer: natsVersion, tmpdir: tmpdir(), rounds, seconds, warmupSeconds, failoverRounds, workloads, keys, valueBytes: value.length,
});

const runs: Awaited<ReturnType<typeof measure>>[] = [];
const failovers: Awaited<ReturnType<typeof failover>>[] = [];

for (let round = 1; round <= rounds; round++) {
  for (const make of systems) {
    const sys = make();
    let clients: Ops[] = [];
    try {
      await sys.start();
      clients = await Promise.all(Array.from({ length: maxClients }, () => sys.client()));
      // Every key exists before the first get; then a warm-up (JIT, connections), not reported.
      for (let k = 0; k < keys; k += 50) await Promise.all(Array.from({ length: Math.min(50, keys - k) }, (_, j) => clients[j % clients.length]!.put(`bench/${k + j}`, value)));
      if (warmupSeconds > 0) await closedLoop(clients.slice(0, 16), 'put', warmupSeconds);
      const idle = await idleCpu(sys);
      for (const w of workloads) {
        const r = await measure(sys, clients, w.op, w.clients, round, idle);
        runs.push(r);
        print(r);
      }
      for (let k = 0; k < failoverRounds; k++) {
        const f = await failover(sys, round, k);
        failovers.push(f);
        print(f);
      }
    } catch (err) {
      print({ kind: 'error', round, system: sys.name, error: (err as Error).stack ?? String(err) });
    } finally {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await sys.stop().catch((err) => print({ kind: 'error', system: sys.name, stop: (err as Error).message }));
    }
  }
}

// ---- summary ---------------------------------------------------------------------------------------

const names = [...new Set(runs.map((r) => r.system))];
const label = (w: { op: string; clients: number }) => `${w.op}@${w.clients}`;
for (const name of names) {
  for (const w of workloads) {
    const rs = runs.filter((r) => r.system === name && r.workload === w.op && r.clients === w.clients);
    if (!rs.length) continue;
    const m = (f: (r: (typeof rs)[number]) => number) => round2(median(rs.map(f)));
    const groups = Object.keys(rs[0]!.rssMB);
    print({
      kind: 'result', system: name, workload: w.op, clients: w.clients, rounds: rs.length,
      opsPerSec: Math.round(median(rs.map((r) => r.opsPerSec))), p50: m((r) => r.p50), p90: m((r) => r.p90), p99: m((r) => r.p99), max: m((r) => r.max),
      errors: rs.reduce((a, r) => a + r.errors, 0),
      rssMB: Object.fromEntries(groups.map((g) => [g, Math.round(median(rs.map((r) => r.rssMB[g]!)))])),
      serverCpuMsPerOp: Object.fromEntries(groups.map((g) => [g, +median(rs.map((r) => r.serverCpuMsPerOp[g]!)).toFixed(3)])),
      idleCpuPct: Object.fromEntries(groups.map((g) => [g, +median(rs.map((r) => r.idleCpuPct[g]!)).toFixed(1)])),
      clientCpuMsPerOp: +median(rs.map((r) => r.clientCpuMsPerOp)).toFixed(3),
      opsPerSecByRound: rs.map((r) => r.opsPerSec),
    });
  }
}
for (const name of names) {
  const ws = failovers.filter((f) => f.system === name && f.windowMs >= 0).map((f) => f.windowMs);
  print({ kind: 'failoverResult', system: name, kills: failovers.filter((f) => f.system === name).length, medianMs: Math.round(median(ws)), minMs: Math.min(...ws), maxMs: Math.max(...ws), windowsMs: ws });
}
/** Median over rounds of the ratio ours/other measured in the same round. */
function ratio(mine: string, other: string, w: { op: string; clients: number }, f: (r: (typeof runs)[number]) => number) {
  const per: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const a = runs.find((r) => r.round === round && r.system === mine && r.workload === w.op && r.clients === w.clients);
    const b = runs.find((r) => r.round === round && r.system === other && r.workload === w.op && r.clients === w.clients);
    if (a && b && f(b) > 0) per.push(f(a) / f(b));
  }
  return per.length ? round2(median(per)) : null;
}
const ratios: Record<string, unknown> = { kind: 'ratios', note: 'ours/other, median of per-round ratios; opsPerSec > 1 and p50 < 1 favour ours' };
const pairs: [string, string][] = names.filter((n) => n !== 'ours').map((n) => ['ours', n]);
// Without fsync on both sides: JetStream 2.9 does not fsync per write (see docs/PERFORMANCE.md).
if (names.includes('ours-tmpfs') && names.includes('jetstream')) pairs.push(['ours-tmpfs', 'jetstream']);
if (names.includes('ours-tmpfs') && names.includes('etcd-tmpfs')) pairs.push(['ours-tmpfs', 'etcd-tmpfs']);
for (const [mine, other] of pairs) {
  const byWorkload: Record<string, unknown> = {};
  for (const w of workloads) {
    byWorkload[label(w)] = { opsPerSec: ratio(mine, other, w, (r) => r.opsPerSec), p50: ratio(mine, other, w, (r) => r.p50), p99: ratio(mine, other, w, (r) => r.p99) };
  }
  const fo = (n: string) => median(failovers.filter((f) => f.system === n && f.windowMs >= 0).map((f) => f.windowMs));
  byWorkload.failoverMedian = round2(fo(mine) / fo(other));
  ratios[`${mine}/${other}`] = byWorkload;
}
print(ratios);
