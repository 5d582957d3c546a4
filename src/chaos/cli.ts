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
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterClient } from '../client.ts';
import { startLocalCluster, type LocalCluster } from '../local-cluster.ts';
import { checkChaosHistory, countOps, formatAnomaly, formatWindow, type Anomaly, type ChaosCheckReport } from './check.ts';
import { Nemesis, type FaultEvent, type FaultKind } from './nemesis.ts';
import { errText, Workload, type ChaosOp } from './workload.ts';

export interface ChaosOptions {
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
}

export interface ChaosSummary {
  seed: number;
  clients: number;
  durationSec: number;
  faultPhaseSec: number;
  operations: ReturnType<typeof countOps>;
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
  log(`${stamp()} chaos seed=${o.seed} clients=${o.clients} duration=${Math.round(o.durationMs / 1000)}s dir=${dir}${o.staleReads ? ' (SELF-CHECK: stale reads)' : ''}`);
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
      // Snapshots every 300 entries: restarts recover from snapshot + WAL, laggards get InstallSnapshot.
      memberArgs: ['--allow-fault-injection', '--snapshot-every', '300'],
    });
    admin = await ClusterClient.connect({ ...cluster.clientOptions(), quorumWaitMs: 3000, requestTimeoutMs: 1000 });
    nemesis = new Nemesis(cluster, admin, { seed: o.seed, holdMs: o.holdMs, quietMs: o.quietMs, log: (l) => log(`${stamp()} nemesis: ${l}`) });
    if (!(await nemesis.waitRecovered())) throw new Error('the cluster did not come up');
    workload = await Workload.start({ cluster, clients: o.clients, seed: o.seed, registerKeys: o.registerKeys, counterKeys: o.counterKeys, readConsistency: o.staleReads ? 'stale' : 'linearizable' });
    const faultStart = performance.now();
    nemesis.start();
    const w = workload;
    const n = nemesis;
    progress = setInterval(() => {
      const c = countOps(w.history);
      const okOps = c.put.ok + c.get.ok + c.cas.ok + c.incr.ok;
      const info = c.put.info + c.cas.info + c.incr.info;
      const faults = Object.entries(n.injected).filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).join(' ');
      log(`${stamp()} ops ${c.total} (ok ${okOps}, unknown ${info}); faults ${faults || '-'}; now: ${n.current ?? 'healed'}`);
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
    const finals = await finalReads(cluster, workload.keys, workload.history.length);
    const history = [...workload.history, ...finals.ops];
    for (const e of finals.errors) extra.push({ kind: 'final', message: e, window: [] });
    if (nemesis.recoveryTimeouts) {
      extra.push({ kind: 'liveness', message: `${nemesis.recoveryTimeouts} time(s) the cluster did not recover within the timeout after a fault was healed (see the recoveryTimeout events)`, window: [] });
    }

    log(`${stamp()} checking ${history.length} ops`);
    const report = checkChaosHistory(history, { registers: workload.registers, counters: workload.counters });
    const anomalies = [...report.anomalies, ...extra];
    for (const a of anomalies) log(formatAnomaly(a, t0));
    if (report.unknownButAppliedExamples.length) {
      log(`writes that failed with NoQuorumError and were later seen applied:\n${formatWindow(report.unknownButAppliedExamples, t0).join('\n')}`);
    }
    if (anomalies.length || report.undecided.length) keepDir = true;
    const summary: ChaosSummary = {
      seed: o.seed,
      clients: o.clients,
      durationSec: +((performance.now() - t0) / 1000).toFixed(1),
      faultPhaseSec: +(faultPhaseMs / 1000).toFixed(1),
      operations: countOps(history),
      faults: { ...nemesis.injected },
      recoveryTimeouts: nemesis.recoveryTimeouts,
      nemesisErrors: nemesis.errors,
      anomalies: anomalies.map((a) => ({ kind: a.kind, key: a.key, message: a.message, window: formatWindow(a.window, t0).map((l) => l.trim()) })),
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

/** Linearizable reads of every key after the final restart, each retried until it succeeds (60 s). */
async function finalReads(cluster: LocalCluster, keys: string[], firstId: number): Promise<{ ops: ChaosOp[]; errors: string[] }> {
  const client = await ClusterClient.connect({ ...cluster.clientOptions(), quorumWaitMs: 5000 });
  const ops: ChaosOp[] = [];
  const errors: string[] = [];
  try {
    let id = firstId;
    for (const key of keys) {
      const deadline = performance.now() + 60_000;
      for (;;) {
        const invokeAt = performance.now();
        try {
          const res = await client.get(key);
          ops.push({
            id: id++, client: 'final', key, op: { type: 'get' }, invokeAt, completeAt: performance.now(), status: 'ok', outcome: 'ok',
            result: (res.kv?.value ?? null) as string | number | null, revision: res.revision, modRevision: res.kv?.modRevision ?? 0,
          });
          break;
        } catch (err) {
          if (performance.now() > deadline) {
            errors.push(`final read of ${key} did not succeed within 60 s: ${errText(err)}`);
            break;
          }
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
  const known = new Set(['minutes', 'seconds', 'seed', 'clients', 'dir', 'keep', 'hold-ms', 'quiet-ms', 'progress-s', 'stale-reads', 'help']);
  for (const a of argv) if (a.startsWith('--') && !known.has(a.slice(2))) throw new Error(`unknown option ${a} (known: --${[...known].join(', --')})`);
  const seconds = get('seconds') !== undefined ? num('seconds', 60) : num('minutes', 1) * 60;
  return {
    durationMs: seconds * 1000,
    seed: Math.floor(num('seed', Date.now() % 1_000_000)),
    clients: Math.max(1, Math.floor(num('clients', 5))),
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
