/**
 * Sustained write load through ONE shared client, against a local cluster this script starts
 * itself (3 member processes, 3 NATS servers on free loopback ports, fsync on, in a temp dir):
 *
 *   npx tsx scripts/load-shared-client.ts --puts 1000000 --keys 1000000 --callers 64 --value-bytes 256 [--seconds 1800]
 *
 * --puts N         how many puts to make in all (default 1000000)
 * --keys K         put i writes key `load/${i % K}` (default: as many keys as puts, every put a new key)
 * --callers C      concurrent callers sharing the one ClusterClient, each awaiting its put (default 64)
 * --value-bytes B  size of each value, a string of B bytes (default 256)
 * --seconds S      stop making new puts after S seconds even if not all are done (default 1800)
 * --keep           keep the temp dir (member data and logs, its path printed) instead of removing it
 *
 * A progress line goes to stderr every 10 s. At the end ONE JSON object goes to stdout: puts ok,
 * errors (by error name and message), ops/s, latency, puts over 250 ms, term and leader at start and
 * end, leader changes (status polled every second), and per member: event-loop lag, GC pauses,
 * snapshots and RSS. Everything it started (members, NATS servers) is stopped by PID at the end, on
 * an error, and on Ctrl-C (the first Ctrl-C stops the load and still prints the result; a second
 * one stops at once). Exit status: 0 when no put failed (also when --seconds ended the run before
 * --puts were made: see stoppedBy), 1 when a put failed or the run could not start, 130 when interrupted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterClient, type MemberStatus } from '../src/client.ts';
import { parseFlags } from '../src/config.ts';
import { startLocalCluster, type LocalCluster } from '../src/local-cluster.ts';

const USAGE = 'usage: npx tsx scripts/load-shared-client.ts [--puts N] [--keys K] [--callers C] [--value-bytes B] [--seconds S] [--keep]';
const KNOWN = new Set(['puts', 'keys', 'callers', 'value-bytes', 'seconds', 'keep', 'help']);
const SLOW_MS = 250;
const PROGRESS_EVERY_MS = 10_000;
const POLL_EVERY_MS = 1000;

function fail(msg: string): never {
  process.stderr.write(`${msg}\n${USAGE}\n`);
  process.exit(2);
}

let flags: Record<string, string | boolean>;
try {
  flags = parseFlags(process.argv.slice(2));
} catch (err) {
  fail((err as Error).message);
}
if (flags.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
for (const k of Object.keys(flags)) if (!KNOWN.has(k)) fail(`unknown flag --${k}`);
function intFlag(name: string, dflt: number, min: number, max: number): number {
  const raw = flags[name];
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (typeof raw !== 'string' || !Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer from ${min} to ${max} (got ${String(raw)})`);
  return n;
}
const puts = intFlag('puts', 1_000_000, 1, 100_000_000);
const keys = intFlag('keys', puts, 1, 100_000_000);
const callers = intFlag('callers', 64, 1, 10_000);
const valueBytes = intFlag('value-bytes', 256, 1, 256 * 1024);
const seconds = intFlag('seconds', 1800, 1, 7 * 24 * 3600);
const keep = flags.keep === true;

const log = (msg: string) => process.stderr.write(`[load ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (b: number) => Math.round(b / 2 ** 20);

/** The value of put i: exactly valueBytes bytes (ASCII), starting with i so values differ. */
function valueOf(i: number): string {
  const head = `${i}:`;
  return head.length >= valueBytes ? head.slice(0, valueBytes) : head + 'x'.repeat(valueBytes - head.length);
}

function pct(sorted: Float32Array, p: number): number | null {
  if (!sorted.length) return null;
  return +sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(2);
}

function leaderOf(all: MemberStatus[]): { leader: string | null; term: number } {
  const term = all.reduce((t, s) => Math.max(t, s.term), 0);
  const leader = all.find((s) => s.role === 'leader' && s.term === term) ?? all.find((s) => s.role === 'leader');
  return { leader: leader?.id ?? null, term };
}

async function waitLeader(client: ClusterClient, members: number, timeoutMs = 60_000): Promise<MemberStatus[]> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const all = await client.status();
      const leaders = all.filter((s) => s.role === 'leader');
      if (all.length >= members && leaders.length === 1 && all.every((s) => s.leader === leaders[0]!.id)) return all;
    } catch {
      // members still starting
    }
    if (performance.now() > deadline) throw new Error(`no leader within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** The upper bound of the bucket holding the p-th percentile of a histogram's samples since `before`. */
function bucketPct(after: MemberStatus['loopLagMs'], before: MemberStatus['loopLagMs'] | undefined, p: number): number | null {
  if (before && before.count > after.count) before = undefined; // restarted
  const n = after.count - (before?.count ?? 0);
  if (!n) return null;
  const rank = Math.ceil((p / 100) * n);
  let seen = 0;
  for (let i = 0; i < after.counts.length; i++) if ((seen += after.counts[i]! - (before?.counts[i] ?? 0)) >= rank) return after.bounds[i]!;
  return after.bounds.at(-1)!; // beyond the last bound
}

/** What the background status poll keeps per member over the run. */
interface Seen {
  first: MemberStatus;
  last: MemberStatus;
  maxRss: number;
  snapshotsObserved: number;
  /** Event-loop stalls (>= the member's stallMs, 100 ms) that ended during the run, by `at|ms`. */
  stalls: Map<string, { at: number; ms: number }>;
}

// ---- state shared with the signal handlers ---------------------------------------------------
let cluster: LocalCluster | null = null;
let client: ClusterClient | null = null;
let dir: string | null = null;
type StopReason = 'done' | 'seconds' | 'SIGINT' | 'SIGTERM';
let stopReason: StopReason | null = null;
let firstSignalAt = 0;
let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await client?.close().catch(() => {});
    await cluster?.stop().catch((err: unknown) => log(`stopping the cluster: ${(err as Error).message}`));
    if (dir && !keep) await rm(dir, { recursive: true, force: true }).catch(() => {});
  })();
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopReason === null) {
      stopReason = sig;
      firstSignalAt = performance.now();
      log(`${sig}: no new puts; waiting for the ones in flight, then the result (again to stop at once)`);
      return;
    }
    // One Ctrl-C can arrive more than once (npx and tsx relay it to this process too).
    if ((stopReason === 'SIGINT' || stopReason === 'SIGTERM') && performance.now() - firstSignalAt < 1000) return;
    log(`${sig}: stopping the cluster now`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  dir = await mkdtemp(join(tmpdir(), 'sc-load-'));
  log(`starting a local cluster (3 members, 3 NATS servers) in ${dir}`);
  cluster = await startLocalCluster({ dir, logLevel: 'warn' });
  if (stopReason) return 130;
  client = await ClusterClient.connect({ ...cluster.clientOptions(), quorumWaitMs: 10_000 });
  const startStatus = await waitLeader(client, cluster.members.length);
  const start = leaderOf(startStatus);
  log(`leader ${start.leader} in term ${start.term}; ${puts} puts over ${keys} keys, ${callers} callers, ${valueBytes}-byte values, at most ${seconds} s`);

  // ---- background status poll: leader changes, lag, snapshots, RSS ----------------------------
  const seen = new Map<string, Seen>(startStatus.map((s) => [s.id, { first: s, last: s, maxRss: s.rssBytes, snapshotsObserved: 0, stalls: new Map() }]));
  let observed = { leader: start.leader, term: start.term };
  let leaderChanges = 0;
  let termChanges = 0;
  const leaderHistory: { atS: number; leader: string | null; term: number }[] = [];
  let pollFailures = 0;
  let polling = true;
  const runStartWall = Date.now();
  const t0 = performance.now();
  const elapsedS = () => (performance.now() - t0) / 1000;
  const note = (all: MemberStatus[]) => {
    for (const s of all) {
      const m = seen.get(s.id);
      if (!m) {
        seen.set(s.id, { first: s, last: s, maxRss: s.rssBytes, snapshotsObserved: 0, stalls: new Map() });
        continue;
      }
      if (s.snapshotIndex > m.last.snapshotIndex) m.snapshotsObserved++;
      m.last = s;
      m.maxRss = Math.max(m.maxRss, s.rssBytes);
      for (const st of s.loopLagMs?.stalls ?? []) if (st.at >= runStartWall) m.stalls.set(`${st.at}|${st.ms}`, st);
    }
    const now = leaderOf(all);
    if (now.leader !== null && (now.leader !== observed.leader || now.term !== observed.term)) {
      if (now.leader !== observed.leader) leaderChanges++;
      if (now.term !== observed.term) termChanges++;
      leaderHistory.push({ atS: +elapsedS().toFixed(1), ...now });
      log(`leader change: ${observed.leader} (term ${observed.term}) -> ${now.leader} (term ${now.term})`);
      observed = now;
    }
  };
  const poller = (async () => {
    while (polling) {
      const tick = performance.now();
      try {
        note(await client!.status());
      } catch {
        pollFailures++;
      }
      await sleep(Math.max(0, POLL_EVERY_MS - (performance.now() - tick)));
    }
  })();

  // ---- the load ----------------------------------------------------------------------------------
  const lat = new Float32Array(puts);
  let ok = 0;
  let next = 0;
  let errors = 0;
  let slow = 0;
  let maxLat = 0;
  const errorGroups = new Map<string, { count: number; firstAtS: number }>();
  const MAX_GROUPS = 100;
  const deadline = performance.now() + seconds * 1000;
  const caller = async () => {
    for (;;) {
      if (stopReason) return;
      if (performance.now() >= deadline) {
        stopReason = 'seconds';
        return;
      }
      const i = next++;
      if (i >= puts) return;
      const tp = performance.now();
      try {
        await client!.put(`load/${i % keys}`, valueOf(i));
        const ms = performance.now() - tp;
        lat[ok++] = ms;
        if (ms > SLOW_MS) slow++;
        if (ms > maxLat) maxLat = ms;
      } catch (err) {
        errors++;
        const e = err as Error;
        let key = `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`;
        if (!errorGroups.has(key) && errorGroups.size >= MAX_GROUPS) key = '(other errors)';
        let g = errorGroups.get(key);
        if (!g) errorGroups.set(key, (g = { count: 0, firstAtS: +elapsedS().toFixed(1) }));
        g.count++;
      }
    }
  };
  let lastProgress = { at: t0, ok: 0 };
  const progress = setInterval(() => {
    const now = performance.now();
    const rate = Math.round((ok - lastProgress.ok) / ((now - lastProgress.at) / 1000));
    lastProgress = { at: now, ok };
    const members = [...seen.values()].sort((a, b) => (a.last.id < b.last.id ? -1 : 1)).map((m) => {
      const l = m.last.loopLagMs;
      return `${m.last.id}${m.last.role === 'leader' ? '*' : ''} rss ${mb(m.last.rssBytes)}MB lag p99 ${l?.window.p99 ?? '?'}/max ${l?.window.max ?? '?'}ms`;
    }).join(', ');
    log(`${elapsedS().toFixed(0)} s: ${ok}/${puts} ok, ${errors} errors, ${rate} puts/s now, ${slow} over ${SLOW_MS} ms, leader ${observed.leader} term ${observed.term} | ${members}`);
  }, PROGRESS_EVERY_MS);
  progress.unref();
  try {
    await Promise.all(Array.from({ length: callers }, caller));
  } finally {
    clearInterval(progress);
  }
  const elapsed = elapsedS();
  // (set by the callers and signal handlers meanwhile: TypeScript's narrowing does not see that)
  const reason = (stopReason as StopReason | null) ?? 'done';
  stopReason = reason;
  polling = false;
  await poller;

  // ---- result -----------------------------------------------------------------------------------
  const endStatus = await client.status().catch(() => [] as MemberStatus[]);
  if (endStatus.length) note(endStatus);
  const end = endStatus.length ? leaderOf(endStatus) : { leader: null, term: observed.term };
  const sorted = lat.subarray(0, ok).sort();
  const members = Object.fromEntries([...seen.values()].sort((a, b) => (a.last.id < b.last.id ? -1 : 1)).map((m) => {
    const s = m.last;
    const l = s.loopLagMs;
    const stalls = [...m.stalls.values()];
    const gcPauses = s.gcMs.count - (m.first.gcMs.count <= s.gcMs.count ? m.first.gcMs.count : 0);
    return [s.id, {
      role: s.role,
      reachableAtEnd: endStatus.some((e) => e.id === s.id),
      loopLag: l ? {
        // Over the whole run, from the member's lag histogram: the upper bound of p99's bucket.
        runP99Ms: bucketPct(l, m.first.loopLagMs, 99),
        // Exact, over the member's last 60 s.
        lastMinuteP99Ms: l.window.p99,
        lastMinuteMaxMs: l.window.max,
        // Since the member started (the run is most of its life).
        longestStallMs: l.longestStallMs,
        longestStallAt: l.longestStallAt === null ? null : new Date(l.longestStallAt).toISOString(),
        runStallsOver100ms: stalls.filter((x) => x.ms >= 100).length,
        runStallsOver250ms: stalls.filter((x) => x.ms >= 250).length,
        runLongestStallMs: stalls.reduce((x, y) => Math.max(x, y.ms), 0) || null,
      } : null,
      gc: { pauses: gcPauses, ms: +(s.gcMs.sum - (m.first.gcMs.count <= s.gcMs.count ? m.first.gcMs.sum : 0)).toFixed(1) },
      snapshotIndex: s.snapshotIndex,
      snapshotsObserved: m.snapshotsObserved,
      snapshots: s.snapshots,
      commitIndex: s.commitIndex,
      appliedIndex: s.appliedIndex,
      rssMB: mb(s.rssBytes),
      maxRssMB: mb(m.maxRss),
      heapUsedMB: mb(s.memory.heapUsed),
    }];
  }));
  const result = {
    script: 'load-shared-client',
    config: { puts, keys, callers, valueBytes, seconds },
    stoppedBy: reason,
    seconds: +elapsed.toFixed(1),
    attempted: Math.min(next, puts),
    putsOk: ok,
    errors,
    errorsByKind: [...errorGroups].slice(0, 10).map(([error, g]) => ({ error, count: g.count, firstAtS: g.firstAtS })),
    errorKinds: errorGroups.size,
    opsPerSec: Math.round(ok / elapsed),
    latencyMs: { p50: pct(sorted, 50), p90: pct(sorted, 90), p99: pct(sorted, 99), p999: pct(sorted, 99.9), max: ok ? +maxLat.toFixed(2) : null },
    putsOver250ms: slow,
    // The leader and the highest term among the members' statuses.
    start: { leader: start.leader, term: start.term },
    end: { leader: end.leader, term: end.term },
    // Seen by polling every member's status every second: another member leading, a new term (an
    // election, possibly won by the same member again); the first 20 of them, seconds into the run.
    leaderChanges,
    termChanges,
    leaderHistory: leaderHistory.slice(0, 20),
    statusPollFailures: pollFailures,
    members,
    ...(keep ? { dir } : {}),
  };
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  return reason === 'SIGINT' || reason === 'SIGTERM' ? 130 : errors === 0 ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  code = 1;
} finally {
  await cleanup();
  if (keep && dir) log(`kept ${dir} (member data and logs in ${join(dir, 'logs')})`);
}
process.exit(code);
