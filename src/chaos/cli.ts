/**
 * The Jepsen-style fault suite: `npm run chaos -- --minutes 30 --seed N --clients 5`.
 *
 * Starts a local cluster (3 routed NATS servers, 3 member processes with fault injection allowed
 * and frequent snapshots), runs the workload (src/chaos/workload.ts) while the nemesis
 * (src/chaos/nemesis.ts) injects faults, stops both, restarts every member one last time
 * (kill -9), reads every key, and checks the history (src/chaos/check.ts). Progress goes to
 * stderr, the JSON summary to stdout; the exit code is 1 on any anomaly, 2 if a key could not be
 * decided within the search budget, 0 otherwise.
 *
 * Options: --minutes M (default 1) or --seconds S, --seed N (default: time-based, printed),
 * --clients C (5), --dir D (default: a temp dir, removed unless --keep or an anomaly),
 * --keep, --hold-ms MIN,MAX and --quiet-ms MIN,MAX (fault timing), --progress-s S (10),
 * --stale-reads (self-check: reads without ReadIndex, checked as linearizable: must fail).
 *
 * Large state and shared clients (issue 18):
 * --data-keys N (0): populate `chaos/d0..d{N-1}` before the faults start (one shared client,
 *   --populate-concurrency P (256) puts in flight, --data-value-bytes B (256) per value), so
 *   snapshots and InstallSnapshot carry real data; during the run callers read, put and cas
 *   over them, and the final reads list them all (paged, linearizable).
 * --shared-clients W (1) and --callers K (64): W more clients, each ONE ClusterClient shared by
 *   K concurrent callers (pausing 0..--think-ms T (100) between ops), with a per-request timeout
 *   of --shared-request-timeout-ms (8000) and a quorum wait of 2.5 times that (at least 10 s): a
 *   write stuck on a dead leader stays in flight while the client's other callers go on, long
 *   enough for more than 1,024 of them to be applied (the summary says how many were).
 * --snapshot-every E: members snapshot every E applied entries (300; with data keys
 *   max(300, N / 20), so a 100,000-key state is not serialized every 300 writes).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterClient } from '../client.ts';
import { startLocalCluster, type LocalCluster } from '../local-cluster.ts';
import { checkChaosHistory, countOps, countRefusals, formatAnomaly, formatWindow, formatWindowClipped, type Anomaly, type ChaosCheckReport, type DataKeysReport } from './check.ts';
import { Nemesis, type FaultEvent, type FaultKind } from './nemesis.ts';
import { dataKeyPrefix, dataTag, errText, isRefusal, SHARED_DEFAULTS, sharedQuorumWaitMs, Workload, type ChaosOp, type PopulationStats, type SharedClientStats, type WorkloadOptions } from './workload.ts';

/** Data keys and shared clients as the workload takes them (sharedClients: default 0 here, the CLI's default is 1). */
type WorkloadShape = Pick<WorkloadOptions, 'dataKeys' | 'dataValueBytes' | 'populateConcurrency' | 'sharedClients' | 'callersPerClient' | 'sharedRequestTimeoutMs' | 'thinkMs'>;

export interface ChaosOptions extends WorkloadShape {
  durationMs: number;
  seed: number;
  clients: number;
  /** Cluster directory; a fresh temp dir by default. */
  dir?: string;
  /** Keep the directory (logs, history.json) even without anomalies. */
  keep?: boolean;
  holdMs?: [number, number];
  quietMs?: [number, number];
  registerKeys?: number;
  counterKeys?: number;
  progressEveryMs?: number;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  /** Self-check: record stale reads as if linearizable; the check must then find anomalies. */
  staleReads?: boolean;
  /** Extend the fault phase (up to this many ms in all) until every kind of fault was injected. */
  untilEveryKindMs?: number;
  /** Checked periodically; true ends the fault phase early (Ctrl-C). */
  interrupted?: () => boolean;
  /** Members' --snapshot-every. Default 300, or max(300, dataKeys / 20). */
  snapshotEvery?: number;
}

export function defaultSnapshotEvery(dataKeys: number): number {
  return Math.max(300, Math.round(dataKeys / 20));
}

export interface ChaosSummary {
  seed: number;
  /** Classic clients (one ClusterClient, one request in flight each). */
  clients: number;
  sharedClients: {
    clients: number;
    callersPerClient: number;
    requestTimeoutMs: number;
    thinkMs: number;
    /** Per client: writes, applied, the most of its writes applied while one was in flight, writes that spanned more than 1,024. */
    perClient: SharedClientStats[];
  };
  dataKeys: { keys: number; valueBytes: number; population: PopulationStats | null; check: DataKeysReport };
  snapshotEvery: number;
  durationSec: number;
  faultPhaseSec: number;
  operations: ReturnType<typeof countOps>;
  /** Writes refused with a MetaError other than casFailed (definite non-effects), by code. */
  refusals: Record<string, number>;
  faults: Record<FaultKind, number>;
  recoveryTimeouts: number;
  /** Faults the nemesis could not apply or heal (harness problems, listed in the progress log). */
  nemesisErrors: number;
  anomalies: { kind: string; key?: string; message: string; window: string[] }[];
  undecidedKeys: string[];
  unknownOutcomeWritesSeenApplied: Record<string, number>;
  check: { ms: number; keys: ChaosCheckReport['keys'] };
  dir?: string;
}

export interface ChaosRun {
  summary: ChaosSummary;
  history: ChaosOp[];
  events: FaultEvent[];
  report: ChaosCheckReport;
  anomalies: Anomaly[];
  /** PIDs of the member processes and NATS servers running at the end; all stopped before runChaos returns. */
  finalPids: number[];
}

export async function runChaos(o: ChaosOptions): Promise<ChaosRun> {
  const log = o.log ?? (() => {});
  const dir = resolve(o.dir ?? mkdtempSync(join(tmpdir(), 'sc-chaos-')));
  const t0 = performance.now();
  const stamp = () => `[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s]`;
  const dataKeys = o.dataKeys ?? 0;
  const sharedClients = o.sharedClients ?? 0;
  const callers = o.callersPerClient ?? SHARED_DEFAULTS.callers;
  const sharedRequestTimeoutMs = o.sharedRequestTimeoutMs ?? SHARED_DEFAULTS.requestTimeoutMs;
  const thinkMs = o.thinkMs ?? SHARED_DEFAULTS.thinkMs;
  const snapshotEvery = o.snapshotEvery ?? defaultSnapshotEvery(dataKeys);
  log(`${stamp()} chaos seed=${o.seed} clients=${o.clients} shared-clients=${sharedClients}x${callers} data-keys=${dataKeys} snapshot-every=${snapshotEvery} duration=${Math.round(o.durationMs / 1000)}s dir=${dir}${o.staleReads ? ' (SELF-CHECK: stale reads)' : ''}`);
  let cluster: LocalCluster | null = null;
  let admin: ClusterClient | null = null;
  let workload: Workload | null = null;
  let nemesis: Nemesis | null = null;
  let progress: NodeJS.Timeout | null = null;
  const extra: Anomaly[] = [];
  let keepDir = o.keep ?? false;
  const finalPids: number[] = [];
  try {
    cluster = await startLocalCluster({
      dir, fresh: true, logLevel: 'warn',
      // Frequent snapshots (every 300 entries by default): restarts recover from snapshot + WAL,
      // laggards get InstallSnapshot (of the populated data keys too).
      memberArgs: ['--allow-fault-injection', '--snapshot-every', String(snapshotEvery)],
    });
    admin = await ClusterClient.connect({ ...cluster.clientOptions(), quorumWaitMs: 3000, requestTimeoutMs: 1000 });
    nemesis = new Nemesis(cluster, admin, { seed: o.seed, holdMs: o.holdMs, quietMs: o.quietMs, log: (l) => log(`${stamp()} nemesis: ${l}`) });
    if (!(await nemesis.waitRecovered())) throw new Error('the cluster did not come up');
    if (dataKeys) log(`${stamp()} populating ${dataKeys} data keys (${o.dataValueBytes ?? 256}-byte values, ${o.populateConcurrency ?? 256} puts in flight on one client)`);
    workload = await Workload.start({
      cluster, clients: o.clients, seed: o.seed, registerKeys: o.registerKeys, counterKeys: o.counterKeys, readConsistency: o.staleReads ? 'stale' : 'linearizable',
      dataKeys, dataValueBytes: o.dataValueBytes, populateConcurrency: o.populateConcurrency,
      sharedClients, callersPerClient: callers, sharedRequestTimeoutMs, sharedQuorumWaitMs: sharedQuorumWaitMs(sharedRequestTimeoutMs), thinkMs,
      log: (l) => log(`${stamp()} ${l}`),
    });
    if (workload.population) {
      const p = workload.population;
      log(`${stamp()} populated ${p.keys} data keys in ${(p.ms / 1000).toFixed(1)} s (${Math.round(p.keys / (p.ms / 1000))} keys/s, ${p.puts} puts, ${p.unconfirmed} unconfirmed)`);
    }
    const faultStart = performance.now();
    nemesis.start();
    const w = workload;
    const n = nemesis;
    progress = setInterval(() => {
      const c = countOps(w.history);
      const okOps = c.put.ok + c.get.ok + c.cas.ok + c.incr.ok;
      const info = c.put.info + c.cas.info + c.incr.info;
      const refused = Object.values(countRefusals(w.history)).reduce((a, b) => a + b, 0);
      const faults = Object.entries(n.injected).filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).join(' ');
      const shared = w.shared.map((s) => `${s.name} max ${s.maxAppliedDuringOneWrite}`).join(', ');
      log(`${stamp()} ops ${c.total} (ok ${okOps}, unknown ${info}, refused ${refused}); faults ${faults || '-'}; now: ${n.current ?? 'healed'}${shared ? `; writes applied during one write: ${shared}` : ''}`);
    }, o.progressEveryMs ?? 10_000);
    // The fault phase: the schedule itself (its length is the run's length, not a wait for a condition).
    const missingKind = () => Object.values(n.injected).some((v) => v === 0);
    for (;;) {
      const elapsed = performance.now() - faultStart;
      if (o.interrupted?.()) break;
      if (elapsed >= o.durationMs && !(o.untilEveryKindMs !== undefined && elapsed < o.untilEveryKindMs && missingKind())) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const faultPhaseMs = performance.now() - faultStart;
    log(`${stamp()} stopping the nemesis (healing everything)`);
    await nemesis.stop();
    log(`${stamp()} stopping the workload (waiting for ops in flight)`);
    await workload.stop();
    clearInterval(progress);
    progress = null;

    // The final full restart: every member kill -9'd at once, then all started again.
    log(`${stamp()} final full restart (kill -9 every member)`);
    await Promise.all(cluster.members.map((m) => m.kill9()));
    for (const m of cluster.members) m.start();
    if (!(await nemesis.waitRecovered())) extra.push({ kind: 'liveness', message: 'the cluster did not recover after the final restart', window: [] });
    const finals = await finalReads(cluster, workload.keys, workload.history.length, workload.data.length ? { prefix: dataKeyPrefix(), keys: workload.data, valueBytes: o.dataValueBytes ?? 256 } : null);
    const history = [...workload.history, ...finals.ops];
    for (const e of finals.errors) extra.push({ kind: 'final', message: e, window: [] });
    if (nemesis.recoveryTimeouts) {
      extra.push({ kind: 'liveness', message: `${nemesis.recoveryTimeouts} time(s) the cluster did not recover within the timeout after a fault was healed (see the recoveryTimeout events)`, window: [] });
    }

    log(`${stamp()} checking ${history.length} ops`);
    const report = checkChaosHistory(history, { registers: workload.registers, counters: workload.counters, dataKeys: workload.data });
    const anomalies = [...report.anomalies, ...extra];
    for (const a of anomalies) log(formatAnomaly(a, t0));
    const refusedOps = history.filter((h) => isRefusal(h));
    if (refusedOps.length) {
      log(`${refusedOps.length} writes were refused (MetaError: definite non-effects, checked as such); the first ones:\n${formatWindow(refusedOps.slice(0, 5), t0).join('\n')}`);
    }
    if (report.unknownButAppliedExamples.length) {
      log(`writes that failed with NoQuorumError and were later seen applied:\n${formatWindow(report.unknownButAppliedExamples, t0).join('\n')}`);
    }
    if (anomalies.length || report.undecided.length) keepDir = true;
    const summary: ChaosSummary = {
      seed: o.seed,
      clients: o.clients,
      sharedClients: { clients: sharedClients, callersPerClient: callers, requestTimeoutMs: sharedRequestTimeoutMs, thinkMs, perClient: workload.shared.map((s) => ({ ...s })) },
      dataKeys: { keys: dataKeys, valueBytes: o.dataValueBytes ?? 256, population: workload.population, check: report.dataKeys },
      snapshotEvery,
      durationSec: +((performance.now() - t0) / 1000).toFixed(1),
      faultPhaseSec: +(faultPhaseMs / 1000).toFixed(1),
      operations: countOps(history),
      refusals: countRefusals(history),
      faults: { ...nemesis.injected },
      recoveryTimeouts: nemesis.recoveryTimeouts,
      nemesisErrors: nemesis.errors,
      anomalies: anomalies.map((a) => ({ kind: a.kind, key: a.key, message: a.message, window: formatWindowClipped(a.window, t0).map((l) => l.trim()) })),
      undecidedKeys: report.undecided,
      unknownOutcomeWritesSeenApplied: report.unknownButApplied,
      check: { ms: report.checkMs, keys: report.keys },
      ...(keepDir ? { dir } : {}),
    };
    if (keepDir) {
      writeFileSync(join(dir, 'history.json'), JSON.stringify({ t0, summary, events: nemesis.events, history }, null, 1));
      log(`${stamp()} history, fault log and member logs kept in ${dir}`);
    }
    return { summary, history, events: nemesis.events, report, anomalies, finalPids };
  } finally {
    if (progress) clearInterval(progress);
    for (const m of cluster?.members ?? []) if (m.running && m.pid) finalPids.push(m.pid);
    for (const s of cluster?.nats.servers ?? []) if (s.running) finalPids.push(s.pid);
    // Whatever happened: no member left paused, every process stopped by PID.
    for (const m of cluster?.members ?? []) if (m.running) m.resume();
    await workload?.stop().catch(() => {});
    await admin?.close().catch(() => {});
    await cluster?.stop();
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Linearizable reads of every key after the final restart, each retried until it succeeds (60 s).
 * Data keys are read by a paged linearizable list of their prefix instead of one get each
 * (100,000 gets would take minutes): every page is a ReadIndex read at one point inside its own
 * request, so each key of a page is recorded as a get with that page's interval; a data key
 * missing from the listing is recorded as read absent.
 */
async function finalReads(
  cluster: LocalCluster,
  keys: string[],
  firstId: number,
  data: { prefix: string; keys: string[]; valueBytes: number } | null,
): Promise<{ ops: ChaosOp[]; errors: string[] }> {
  const client = await ClusterClient.connect({ ...cluster.clientOptions(), quorumWaitMs: 5000 });
  const ops: ChaosOp[] = [];
  const errors: string[] = [];
  let id = firstId;
  const retry = async <T>(what: string, fn: () => Promise<T>): Promise<T | null> => {
    const deadline = performance.now() + 60_000;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (performance.now() > deadline) {
          errors.push(`final read of ${what} did not succeed within 60 s: ${errText(err)}`);
          return null;
        }
      }
    }
  };
  try {
    for (const key of keys) {
      await retry(key, async () => {
        const invokeAt = performance.now();
        const res = await client.get(key);
        ops.push({
          id: id++, client: 'final', key, op: { type: 'get' }, invokeAt, completeAt: performance.now(), status: 'ok', outcome: 'ok',
          result: (res.kv?.value ?? null) as string | number | null, revision: res.revision, modRevision: res.kv?.modRevision ?? 0,
        });
      });
    }
    if (data) {
      const wanted = new Set(data.keys);
      const listed = new Set<string>();
      let after: string | undefined;
      let firstInvokeAt: number | null = null;
      let lastPage: { completeAt: number; revision: number } | null = null;
      let complete = false;
      for (let more = true; more; ) {
        const page = await retry(`${data.prefix}* after ${after ?? '(start)'}`, async () => {
          const invokeAt = performance.now();
          const res = await client.list(data.prefix, { limit: 2000, ...(after !== undefined ? { after } : {}) });
          return { res, invokeAt, completeAt: performance.now() };
        });
        if (!page) break;
        const { res, invokeAt, completeAt } = page;
        firstInvokeAt ??= invokeAt;
        for (const kv of res.kvs) {
          if (!wanted.has(kv.key)) continue; // not one of ours (e.g. a key of another run's size)
          listed.add(kv.key);
          ops.push({
            id: id++, client: 'final', key: kv.key, op: { type: 'get' }, invokeAt, completeAt, status: 'ok', outcome: 'ok',
            result: dataTag(kv.value, data.valueBytes) as string | number | null, revision: res.revision, modRevision: kv.modRevision,
          });
        }
        lastPage = { completeAt, revision: res.revision };
        more = res.more && res.kvs.length > 0;
        complete = !more;
        after = res.kvs.at(-1)?.key;
      }
      if (complete && lastPage && firstInvokeAt !== null) {
        // Absent from a complete listing: read as absent by the page that covers its place, which
        // read at some point inside the whole listing's interval.
        for (const key of data.keys) {
          if (listed.has(key)) continue;
          ops.push({ id: id++, client: 'final', key, op: { type: 'get' }, invokeAt: firstInvokeAt, completeAt: lastPage.completeAt, status: 'ok', outcome: 'ok', result: null });
        }
      }
    }
  } finally {
    await client.close();
  }
  return { ops, errors };
}

function parseArgs(argv: string[]): ChaosOptions {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
    return v;
  };
  const num = (name: string, dflt: number): number => {
    const v = get(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got ${v}`);
    return n;
  };
  const range = (name: string): [number, number] | undefined => {
    const v = get(name);
    if (v === undefined) return undefined;
    const [a, b] = v.split(',').map(Number);
    if (!Number.isInteger(a) || !Number.isInteger(b) || a! < 0 || b! < a!) throw new Error(`--${name} must be MIN,MAX in ms`);
    return [a!, b!];
  };
  const known = new Set([
    'minutes', 'seconds', 'seed', 'clients', 'dir', 'keep', 'hold-ms', 'quiet-ms', 'progress-s', 'stale-reads', 'help',
    'data-keys', 'data-value-bytes', 'populate-concurrency', 'shared-clients', 'callers', 'shared-request-timeout-ms', 'think-ms', 'snapshot-every',
  ]);
  for (const a of argv) if (a.startsWith('--') && !known.has(a.slice(2))) throw new Error(`unknown option ${a} (known: --${[...known].join(', --')})`);
  const seconds = get('seconds') !== undefined ? num('seconds', 60) : num('minutes', 1) * 60;
  return {
    durationMs: seconds * 1000,
    seed: Math.floor(num('seed', Date.now() % 1_000_000)),
    // At least one client of either kind.
    clients: Math.max(num('shared-clients', 1) >= 1 ? 0 : 1, Math.floor(num('clients', 5))),
    sharedClients: Math.floor(num('shared-clients', 1)),
    callersPerClient: Math.max(1, Math.floor(num('callers', SHARED_DEFAULTS.callers))),
    sharedRequestTimeoutMs: Math.max(100, num('shared-request-timeout-ms', SHARED_DEFAULTS.requestTimeoutMs)),
    thinkMs: Math.floor(num('think-ms', SHARED_DEFAULTS.thinkMs)),
    dataKeys: Math.floor(num('data-keys', 0)),
    dataValueBytes: Math.max(1, Math.floor(num('data-value-bytes', 256))),
    populateConcurrency: Math.max(1, Math.floor(num('populate-concurrency', 256))),
    snapshotEvery: get('snapshot-every') !== undefined ? Math.max(1, Math.floor(num('snapshot-every', 300))) : undefined,
    dir: get('dir'),
    keep: argv.includes('--keep'),
    staleReads: argv.includes('--stale-reads'),
    holdMs: range('hold-ms'),
    quietMs: range('quiet-ms'),
    progressEveryMs: num('progress-s', 10) * 1000,
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help')) {
    console.log('npm run chaos -- [--minutes M | --seconds S] [--seed N] [--clients C] [--dir D] [--keep] [--hold-ms MIN,MAX] [--quiet-ms MIN,MAX] [--progress-s S] [--stale-reads]');
    console.log('                  [--data-keys N] [--data-value-bytes B] [--populate-concurrency P] [--shared-clients W] [--callers K] [--shared-request-timeout-ms T] [--think-ms T] [--snapshot-every E]');
    console.log('--data-keys N (0): populate chaos/d0..d{N-1} (B=256-byte values, P=256 puts in flight on one client) before the faults; callers also use them during the run');
    console.log('--shared-clients W (1), --callers K (64): W clients each shared by K concurrent callers (--think-ms: 0..100 ms pause between ops; --shared-request-timeout-ms 8000)');
    console.log('--snapshot-every E: members snapshot every E entries (default 300, or max(300, N/20) with data keys)');
    console.log('--stale-reads: self-check of the suite: reads skip ReadIndex but are checked as linearizable, so anomalies must be reported');
    return;
  }
  let o: ChaosOptions;
  try {
    o = parseArgs(argv);
  } catch (err) {
    console.error((err as Error).message);
    process.exitCode = 2;
    return;
  }
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130); // second Ctrl-C: members and NATS servers stop with us (stdin pipes, guard)
    interrupted = true;
    console.error('interrupted: ending the fault phase early and checking (Ctrl-C again to abort)');
  });
  const run = await runChaos({ ...o, log: (l) => console.error(l), interrupted: () => interrupted });
  console.log(JSON.stringify(run.summary, null, 2));
  process.exitCode = run.anomalies.length ? 1 : run.summary.undecidedKeys.length ? 2 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
