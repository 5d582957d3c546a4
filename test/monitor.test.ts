/**
 * Monitor: the pure eviction rules, the chart, and simulator-style runs of the real Monitor and
 * HeartbeatSender actors over a fake replicated log on virtual time (src/sim/scheduler.ts), each
 * host with its own monotonic clock origin and, where it matters, a wall clock minutes off.
 */
import test from 'ava';
import { createActor } from 'xstate';
import { HeartbeatSender, osUsageSampler, UsageAverager, type HeartbeatIdentity, type MetaWriter, type UsageSample } from '../actors/heartbeat.ts';
import { Monitor, resolveMonitorOptions, type FencingToken, type LeaderAction, type MonitorHost } from '../actors/monitor.ts';
import { monitorMachine, type MonitorEmitted } from '../machines/monitor.ts';
import { MetaError, NoQuorumError, NotLeaderError } from '../src/errors.ts';
import { Counters } from '../src/metrics.ts';
import {
  checkHeartbeatTiming, decideEvictions, evictionCommand, isMonitoredKey, observeEntry, takeOfflineRetention, type Tracked,
} from '../src/monitor/evict.ts';
import { EntryType } from '../src/raft/types.ts';
import { NodeClock, Scheduler } from '../src/sim/scheduler.ts';
import { encodeMetaCommand, MetadataStateMachine, type MetaCommand, type MetaResult, type WatchEvent } from '../src/sm/metadata.ts';

// ---- pure rules ---------------------------------------------------------------------------------

const tracked = (entries: Record<string, Tracked>) => new Map(Object.entries(entries));

test('decideEvictions: silence beyond the timeout evicts, at the revision judged; exactly the timeout does not', (t) => {
  const m = tracked({
    'meta/intp/a': { revision: 7, offline: false, seenAt: 1000 },
    'meta/intp/b': { revision: 9, offline: false, seenAt: 2000 },
    'meta/server/h:1': { revision: 3, offline: false, seenAt: 500 },
  });
  const d = decideEvictions({ tracked: m, now: 11_000, heartbeatTimeoutMs: 9000, offlineRetentionMs: 60_000, graceStart: 0 });
  t.deepEqual(d.map((x) => [x.action, x.key, x.expectedRevision]), [['evict', 'meta/intp/a', 7], ['evict', 'meta/server/h:1', 3]]);
  t.is(d[0]!.silentMs, 10_000);
  // b: silent exactly 9000 ms -> not yet.
  t.false(d.some((x) => x.key === 'meta/intp/b'));
});

test('decideEvictions: nobody is judged silent from before the grace start (a new leader)', (t) => {
  const m = tracked({ 'meta/intp/a': { revision: 7, offline: false, seenAt: 0 } });
  const base = { tracked: m, heartbeatTimeoutMs: 9000, offlineRetentionMs: 60_000 };
  t.deepEqual(decideEvictions({ ...base, now: 100_000, graceStart: 95_000 }), [], 'within one timeout of becoming leader');
  t.is(decideEvictions({ ...base, now: 104_001, graceStart: 95_000 }).length, 1, 'a full timeout after becoming leader');
});

test('decideEvictions: OFFLINE entries are removed after the retention; in-flight keys are skipped', (t) => {
  const m = tracked({
    'meta/intp/a': { revision: 7, offline: true, seenAt: 1000 },
    'meta/intp/b': { revision: 8, offline: true, seenAt: 50_000 },
    'meta/intp/c': { revision: 9, offline: false, seenAt: 0 },
  });
  const d = decideEvictions({ tracked: m, now: 61_001, heartbeatTimeoutMs: 9000, offlineRetentionMs: 60_000, graceStart: 0, inFlight: new Set(['meta/intp/c']) });
  t.deepEqual(d.map((x) => [x.action, x.key, x.expectedRevision]), [['remove', 'meta/intp/a', 7]]);
  t.deepEqual(evictionCommand(d[0]!), { op: 'delete', key: 'meta/intp/a', expectedRevision: 7 });
  t.deepEqual(evictionCommand({ action: 'evict', key: 'meta/intp/c', expectedRevision: 9, silentMs: 1 }),
    { op: 'put', key: 'meta/intp/c', value: { STATUS: 'OFFLINE' }, merge: true, expectedRevision: 9 });
});

test('observeEntry and isMonitoredKey: only object entries of meta/server/ and meta/intp/', (t) => {
  t.true(isMonitoredKey('meta/server/h:1'));
  t.true(isMonitoredKey('meta/intp/g'));
  t.false(isMonitoredKey('meta/intp/'));
  t.false(isMonitoredKey('meta/other/x'));
  t.deepEqual(observeEntry({ key: 'meta/intp/g', value: { STATUS: 'OFFLINE' }, modRevision: 4 }), { revision: 4, offline: true });
  t.deepEqual(observeEntry({ key: 'meta/intp/g', value: { STATUS: 'ONLINE' }, modRevision: 5 }), { revision: 5, offline: false });
  t.is(observeEntry({ key: 'meta/intp/g', value: 'text', modRevision: 5 }), null);
  t.is(observeEntry({ key: 'notes/x', value: {}, modRevision: 5 }), null);
});

test('heartbeat timing rules as the original: timeout < interval is an error, < 3x warns', (t) => {
  t.deepEqual(checkHeartbeatTiming(3000, 9000), []);
  t.regex(checkHeartbeatTiming(3000, 8999)[0]!, /under 3x/);
  const err = t.throws(() => checkHeartbeatTiming(3000, 2999), { instanceOf: RangeError });
  t.regex(err!.message, /must not be below the interval/);
  t.throws(() => checkHeartbeatTiming(0, 9000), { instanceOf: RangeError });
  t.throws(() => resolveMonitorOptions({ heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 500 }), { instanceOf: RangeError });
  t.throws(() => resolveMonitorOptions({ offlineRetentionMs: -1 }), { instanceOf: RangeError });
  t.like(resolveMonitorOptions(), { heartbeatTimeoutMs: 9000, offlineRetentionMs: 60_000, checkEveryMs: 900 });
});

test('--offline-retention is taken out of a member argv (flag beats env) and checked', (t) => {
  t.deepEqual(takeOfflineRetention(['--id', 'n1', '--offline-retention', '2500', '--join']), { argv: ['--id', 'n1', '--join'], offlineRetentionMs: 2500 });
  t.deepEqual(takeOfflineRetention(['--offline-retention=10'], { SUBMARINE_OFFLINE_RETENTION_MS: '99' }), { argv: [], offlineRetentionMs: 10 });
  t.deepEqual(takeOfflineRetention(['--id', 'n1'], { SUBMARINE_OFFLINE_RETENTION_MS: '99' }), { argv: ['--id', 'n1'], offlineRetentionMs: 99 });
  t.deepEqual(takeOfflineRetention(['--id', 'n1']), { argv: ['--id', 'n1'] });
  t.throws(() => takeOfflineRetention(['--offline-retention', '2s']), { message: /flag --offline-retention/ });
});

test('usage is averaged over the last N samples, so one peak barely moves it', (t) => {
  const avg = new UsageAverager(4);
  const s = (memoryUsed: number): UsageSample => ({ cpuUsed: 10, cpuCapacity: 200, memoryUsed, memoryCapacity: 1000 });
  for (const m of [100, 100, 100]) avg.add(s(m));
  avg.add(s(900)); // a momentary peak
  t.is(avg.average().memoryUsed, 300);
  for (const m of [100, 100, 100, 100]) avg.add(s(m));
  t.is(avg.average().memoryUsed, 100, 'the peak has left the window');
  t.is(avg.count, 4);
  t.throws(() => new UsageAverager(0), { instanceOf: RangeError });
  const real = osUsageSampler()();
  t.true(real.memoryCapacity > 0 && real.memoryUsed > 0 && real.memoryUsed <= real.memoryCapacity, JSON.stringify(real));
  t.true(real.cpuCapacity >= 100 && real.cpuUsed >= 0 && real.cpuUsed <= real.cpuCapacity, JSON.stringify(real));
});

// ---- the chart ----------------------------------------------------------------------------------

type Proposal = Extract<MonitorEmitted, { type: 'propose' }>;

/** The chart alone, with TICKs every 100 ms of its own time (as the actor sends them). */
function chart() {
  const emitted: Proposal[] = [];
  const paused: number[] = [];
  const a = createActor(monitorMachine, { input: { heartbeatTimeoutMs: 1000, offlineRetentionMs: 5000, checkEveryMs: 100 } });
  a.on('propose', (e) => emitted.push(e));
  a.on('paused', (e) => paused.push(e.pausedMs));
  a.start();
  let clock = 0;
  /** Regular ticks from the last one up to `until` (inclusive). */
  const tickUntil = (until: number, entries?: { key: string; revision: number; offline: boolean }[]) => {
    for (clock = Math.max(clock, until - 100_000); clock + 100 <= until; ) {
      clock += 100;
      a.send({ type: 'TICK', now: clock, ...(entries ? { entries } : {}) });
    }
  };
  const at = (now: number) => {
    clock = now;
  };
  return { a, emitted, paused, tickUntil, at };
}

test('chart: a follower tracks but never decides; a leader decides after its own grace; one decision per key in flight', (t) => {
  const { a, emitted, tickUntil, at } = chart();
  a.send({ type: 'OBSERVED', key: 'meta/intp/x', revision: 5, offline: false, now: 0 });
  tickUntil(50_000);
  t.is(emitted.length, 0, 'followers do not act');
  a.send({ type: 'ROLE', leader: true, term: 3, now: 60_000 });
  at(60_000);
  tickUntil(61_000);
  t.is(emitted.length, 0, 'grace: silence is counted from becoming leader, not from the last sighting');
  tickUntil(61_100);
  t.deepEqual(emitted.map((e) => [e.decision.action, e.decision.key, e.decision.expectedRevision, e.term]), [['evict', 'meta/intp/x', 5, 3]]);
  tickUntil(61_500);
  t.is(emitted.length, 1, 'not proposed again while in flight');
  a.send({ type: 'SETTLED', key: 'meta/intp/x' });
  tickUntil(61_600);
  t.is(emitted.length, 2, 'judged again once settled (the write failed: still ONLINE at revision 5)');
});

test('chart: a heartbeat resets the silence; a new term restarts the grace; stepping down stops acting', (t) => {
  const { a, emitted, tickUntil } = chart();
  a.send({ type: 'ROLE', leader: true, term: 1, now: 0 });
  a.send({ type: 'OBSERVED', key: 'meta/intp/x', revision: 5, offline: false, now: 0 });
  tickUntil(900);
  a.send({ type: 'OBSERVED', key: 'meta/intp/x', revision: 6, offline: false, now: 900 });
  tickUntil(1800);
  t.is(emitted.length, 0);
  a.send({ type: 'ROLE', leader: true, term: 2, now: 1800 }); // re-elected in a later term
  tickUntil(2800);
  t.is(emitted.length, 0, 'grace from the new term');
  a.send({ type: 'ROLE', leader: false, term: 3, now: 2800 });
  tickUntil(9000);
  t.is(emitted.length, 0);
  t.is(a.getSnapshot().value, 'follower');
});

test('chart: a TICK reconciles with the store listing (a snapshot install emits no change events)', (t) => {
  const { a, emitted, tickUntil } = chart();
  a.send({ type: 'ROLE', leader: true, term: 1, now: 0 });
  a.send({ type: 'OBSERVED', key: 'meta/intp/gone', revision: 2, offline: false, now: 0 });
  a.send({ type: 'OBSERVED', key: 'meta/intp/moved', revision: 3, offline: false, now: 0 });
  tickUntil(500);
  // The listing no longer has "gone", and "moved" is at a newer revision: seen now, not evicted at 1000.
  tickUntil(600, [{ key: 'meta/intp/moved', revision: 40, offline: false }]);
  tickUntil(1200);
  t.is(emitted.length, 0);
  t.false(a.getSnapshot().context.tracked.has('meta/intp/gone'));
  tickUntil(1700);
  t.deepEqual(emitted.map((e) => [e.decision.key, e.decision.expectedRevision]), [['meta/intp/moved', 40]]);
});

test('chart: the leader\'s own stall is not counted as anyone\'s silence', (t) => {
  const { a, emitted, paused, tickUntil, at } = chart();
  a.send({ type: 'ROLE', leader: true, term: 1, now: 0 });
  a.send({ type: 'OBSERVED', key: 'meta/intp/x', revision: 5, offline: false, now: 0 });
  a.send({ type: 'OBSERVED', key: 'meta/intp/dead', revision: 6, offline: false, now: 0 });
  tickUntil(800);
  at(3000); // the process stood still from 800 to 3000; x's heartbeat was waiting in a socket
  a.send({ type: 'TICK', now: 3000 });
  t.deepEqual(emitted, [], 'no eviction right after the stall');
  t.deepEqual(paused, [2100]);
  a.send({ type: 'OBSERVED', key: 'meta/intp/x', revision: 7, offline: false, now: 3001 });
  tickUntil(3100);
  t.deepEqual(emitted, []);
  // "dead" was silent 800 ms before the stall and is after 200 more: evicted once 1000 ms are counted.
  tickUntil(3200);
  t.deepEqual(emitted.map((e) => e.decision.key), ['meta/intp/dead']);
  t.is(emitted[0]!.decision.silentMs, 1100, 'silence: 3200 - 0 - 2100 paused');
});

// ---- simulator: real actors over a fake replicated log on virtual time -------------------------

const TIMEOUT = 1000;
const INTERVAL = 300;
const RETENTION = 2000;
const COMMIT_DELAY = 5;
const EPOCH = 1_700_000_000_000;

/** A fake of the Raft group: one log applied to every member's state machine after COMMIT_DELAY. */
class SimCluster {
  readonly sched = new Scheduler();
  readonly members: SimMember[] = [];
  leader: SimMember | null = null;
  term = 0;
  private index = 0;
  /** Return true to take over a proposal (the test commits it later through `commit`). */
  intercept: ((from: SimMember, cmd: MetaCommand, commit: () => void) => boolean) | null = null;

  constructor(n: number) {
    for (let i = 0; i < n; i++) this.members.push(new SimMember(this, `m${i + 1}`, i));
  }

  elect(m: SimMember): void {
    this.term++;
    this.leader = m;
    for (const x of this.members) if (x.alive) x.roleChanged();
  }

  crash(m: SimMember): void {
    m.alive = false;
    m.monitor.stop();
    if (this.leader === m) this.leader = null;
    for (const x of this.members) if (x.alive) x.roleChanged();
  }

  propose(from: SimMember, cmd: MetaCommand): Promise<{ index: number; result: MetaResult }> {
    if (this.leader !== from) return Promise.reject(new NotLeaderError(this.leader?.id ?? null));
    return new Promise((resolve) => {
      const term = this.term;
      const commit = () => {
        const entry = { index: ++this.index, term, type: EntryType.Command, data: encodeMetaCommand(cmd) };
        let result: MetaResult | undefined;
        for (const m of this.members) {
          const r = m.sm.apply(entry);
          if (m === from) result = r;
        }
        resolve({ index: entry.index, result: result! });
      };
      if (!this.intercept?.(from, cmd, () => this.sched.after(COMMIT_DELAY, commit))) this.sched.after(COMMIT_DELAY, commit);
    });
  }

  /** A client: writes go to the leader; with none, retry every 250 ms for a while (ClusterClient backs off up to 500 ms). */
  writer(): MetaWriter {
    const write = async (cmd: MetaCommand) => {
      const deadline = this.sched.now + 1000;
      for (;;) {
        if (this.leader) {
          const { result } = await this.propose(this.leader, cmd);
          if (!result.ok) throw new MetaError(result.code, result.message, result.revision);
          return result;
        }
        if (this.sched.now >= deadline) throw new NoQuorumError('no leader');
        await new Promise((r) => this.sched.after(250, () => r(undefined)));
      }
    };
    return {
      put: (key, value, o) => write({ op: 'put', key, value, ...o }),
      delete: (key, o) => write({ op: 'delete', key, ...o }),
      get: async (key) => ({ kv: (this.leader ?? this.members[0]!).sm.get(key) ?? null }),
    };
  }

  /** A host's clock: its own origin (monotonic clocks are not comparable across hosts). */
  clock(originMs: number): NodeClock {
    const c = new NodeClock(this.sched);
    c.jump(originMs);
    return c;
  }

  async runUntil(time: number): Promise<void> {
    while (this.sched.step(time)) await new Promise((r) => setImmediate(r));
    this.sched.now = time;
  }

  /** Runs virtual time until the promise settles. */
  async settle<T>(p: Promise<T>): Promise<T> {
    let done = false;
    p.then(() => (done = true), () => (done = true));
    while (!done) {
      if (!this.sched.step(this.sched.now + 10_000)) await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    }
    return p;
  }
}

class SimMember implements MonitorHost {
  readonly sm = new MetadataStateMachine();
  readonly counters = new Counters();
  readonly clock: NodeClock;
  readonly monitor: Monitor;
  readonly actions: { action: LeaderAction; token: FencingToken }[] = [];
  alive = true;
  private readonly roleFns = new Set<(role: string, term: number) => void>();
  readonly node = { status: () => ({ role: this.sim.leader === this ? 'leader' : 'follower', term: this.sim.term }) };

  constructor(private readonly sim: SimCluster, readonly id: string, i: number) {
    this.clock = sim.clock(1_000_000 * (i + 1) + 123);
    this.monitor = new Monitor(this, { heartbeatIntervalMs: INTERVAL, heartbeatTimeoutMs: TIMEOUT, offlineRetentionMs: RETENTION });
    this.monitor.onLeaderAction((action, token) => void this.actions.push({ action, token }));
  }

  isLeader(): boolean {
    return this.sim.leader === this;
  }

  propose(cmd: MetaCommand) {
    return this.sim.propose(this, cmd);
  }

  onRoleChange(fn: (role: string, term: number) => void): () => void {
    this.roleFns.add(fn);
    return () => void this.roleFns.delete(fn);
  }

  roleChanged(): void {
    const s = this.node.status();
    for (const fn of this.roleFns) fn(s.role, s.term);
  }
}

/** Every committed change of monitored keys, with the virtual time it applied. */
function record(sim: SimCluster) {
  const events: { at: number; ev: WatchEvent }[] = [];
  sim.members[0]!.sm.onChange((ev) => events.push({ at: sim.sched.now, ev }));
  const offline = (key?: string) => events.filter((e) => e.ev.type === 'put' && (e.ev.kv.value as { STATUS?: string }).STATUS === 'OFFLINE' && (!key || e.ev.kv.key === key));
  const heartbeats = (key: string) => events.filter((e) => e.ev.type === 'put' && e.ev.kv.key === key && (e.ev.kv.value as { STATUS?: string }).STATUS === 'ONLINE');
  const deletes = (key: string) => events.filter((e) => e.ev.type === 'delete' && e.ev.kv.key === key);
  return { events, offline, heartbeats, deletes };
}

async function sender(sim: SimCluster, identity: HeartbeatIdentity, o: { origin: number; wallSkewMs?: number; memoryUsed?: number }) {
  const clock = sim.clock(o.origin);
  return sim.settle(HeartbeatSender.start({
    writer: sim.writer(), identity, heartbeatIntervalMs: INTERVAL, heartbeatTimeoutMs: TIMEOUT, clock,
    wallClock: () => EPOCH + sim.sched.now + (o.wallSkewMs ?? 0),
    sampleUsage: () => ({ cpuUsed: 10, cpuCapacity: 400, memoryUsed: o.memoryUsed ?? 1000, memoryCapacity: 8000 }),
  }));
}

const SERVER = { kind: 'server', host: '10.0.0.1', port: 8080 } as const;
const INTP = { kind: 'interpreter', groupId: 'spark-1', host: '10.0.0.2', port: 40001, nodeName: '10.0.0.1:8080' } as const;
const SERVER_KEY = 'meta/server/10.0.0.1:8080';
const INTP_KEY = 'meta/intp/spark-1';

test('sim: a member silent beyond the timeout is evicted (conditional on its last heartbeat), then removed after the retention', async (t) => {
  const sim = new SimCluster(3);
  const rec = record(sim);
  sim.elect(sim.members[0]!);
  const server = await sender(sim, SERVER, { origin: 7_000_000 });
  const intp = await sender(sim, INTP, { origin: 9_000_000 });
  await sim.runUntil(3000);
  t.deepEqual(rec.offline(), [], 'healthy members stay ONLINE');
  t.like(sim.members[1]!.sm.get(INTP_KEY)!.value as object, { STATUS: 'ONLINE', INTP_TSERVER_HOST: '10.0.0.2', INTP_TSERVER_PORT: 40001, NODE_NAME: '10.0.0.1:8080' });
  t.like(sim.members[1]!.sm.get(SERVER_KEY)!.value as object, { STATUS: 'ONLINE', SERVER_HOST: '10.0.0.1', SERVER_PORT: 8080, MEMORY_CAPACITY: 8000, MEMORY_USED: 1000 });

  await sim.settle(intp.stop({ deregister: false })); // a crash: no goodbye
  const lastBeat = rec.heartbeats(INTP_KEY).at(-1)!;
  await sim.runUntil(3000 + TIMEOUT + RETENTION + 1000);

  const [off, ...more] = rec.offline(INTP_KEY);
  t.truthy(off, 'evicted');
  t.is(more.length, 0);
  const checkEvery = sim.members[0]!.monitor.checkEveryMs;
  const silence = off!.at - lastBeat.at;
  t.true(silence > TIMEOUT && silence <= TIMEOUT + checkEvery + COMMIT_DELAY, `evicted after ${silence} ms of silence`);
  t.is(off!.ev.prev!.modRevision, lastBeat.ev.kv.modRevision, 'the eviction was conditional on the last heartbeat revision');
  const [gone] = rec.deletes(INTP_KEY);
  t.truthy(gone, 'removed after the retention');
  const offFor = gone!.at - off!.at;
  t.true(offFor > RETENTION && offFor <= RETENTION + checkEvery + COMMIT_DELAY, `removed after ${offFor} ms OFFLINE`);
  t.deepEqual(rec.offline(SERVER_KEY), [], 'the heartbeating server was never evicted');

  const leader = sim.members[0]!;
  t.deepEqual(leader.actions.map((a) => [a.action.action, a.action.type, a.action.name]), [['evict', 'intp', 'spark-1'], ['remove', 'intp', 'spark-1']]);
  t.deepEqual(leader.actions[0]!.token, { term: 1, revision: off!.ev.revision }, 'fencing token: deciding term and applied revision');
  t.deepEqual(sim.members[1]!.actions, [], 'followers never act');
  await sim.settle(server.stop());
  t.is(leader.sm.get(SERVER_KEY), undefined, 'a clean stop deregisters');
});

test('sim: a leader failover with a gap longer than the timeout evicts no healthy member (new leader grace)', async (t) => {
  const sim = new SimCluster(3);
  const rec = record(sim);
  sim.elect(sim.members[0]!);
  await sender(sim, SERVER, { origin: 5_000 });
  await sender(sim, INTP, { origin: 77_000 });
  await sim.runUntil(3000);
  sim.crash(sim.members[0]!);
  // No leader for 1.5 timeouts: nobody's heartbeat can commit, the survivors' last sightings go stale.
  await sim.runUntil(3000 + 1.5 * TIMEOUT);
  sim.elect(sim.members[1]!);
  const electedAt = sim.sched.now;
  await sim.runUntil(electedAt + 5 * TIMEOUT);
  t.deepEqual(rec.offline().map((e) => e.ev.kv.key), [], 'nobody evicted');
  t.true(rec.heartbeats(INTP_KEY).filter((e) => e.at > electedAt).length >= 10, 'heartbeats resumed under the new leader');
  t.is(sim.members[1]!.monitor.state, 'leader');
});

test('sim: wall clocks minutes off (LATEST_HEARTBEAT far from the leader\'s time) evict nobody wrongly', async (t) => {
  const sim = new SimCluster(3);
  const rec = record(sim);
  sim.elect(sim.members[2]!);
  await sender(sim, SERVER, { origin: 1, wallSkewMs: 7 * 60_000 }); // seven minutes ahead
  await sender(sim, INTP, { origin: 2, wallSkewMs: -5 * 60_000 }); // five minutes behind
  await sim.runUntil(10 * TIMEOUT);
  const intpBeat = (sim.members[2]!.sm.get(INTP_KEY)!.value as { LATEST_HEARTBEAT: number }).LATEST_HEARTBEAT;
  const serverBeat = (sim.members[2]!.sm.get(SERVER_KEY)!.value as { LATEST_HEARTBEAT: number }).LATEST_HEARTBEAT;
  const leaderWall = EPOCH + sim.sched.now;
  t.true(leaderWall - intpBeat > 4 * 60_000 && serverBeat - leaderWall > 6 * 60_000, 'the skew is really there');
  t.deepEqual(rec.offline(), [], 'nobody evicted');
});

test('sim: a heartbeat racing an eviction makes the eviction a no-op (casFailed); a later silence still evicts', async (t) => {
  const sim = new SimCluster(3);
  const rec = record(sim);
  const leader = sim.members[0]!;
  sim.elect(leader);
  const intp = await sender(sim, INTP, { origin: 3 });
  await sim.runUntil(2000);
  await sim.settle(intp.stop({ deregister: false }));
  const zombie = sim.writer(); // the "dead" process's last heartbeat, still on its way
  let raced = false;
  sim.intercept = (_from, cmd, commit) => {
    if (raced || cmd.op !== 'put' || cmd.key !== INTP_KEY || (cmd.value as { STATUS?: string }).STATUS !== 'OFFLINE') return false;
    raced = true;
    void zombie.put(INTP_KEY, { LATEST_HEARTBEAT: EPOCH, STATUS: 'ONLINE' }, { merge: true }); // commits first
    commit();
    return true;
  };
  await sim.runUntil(2000 + TIMEOUT + 500);
  t.true(raced, 'the monitor proposed an eviction');
  t.is(leader.counters.get('monitor_decisions_total', { action: 'evict', outcome: 'casFailed' }), 1, 'that eviction applied as casFailed');
  t.deepEqual(rec.offline(), [], 'no OFFLINE was written by the raced eviction');
  t.deepEqual(leader.actions, [], 'no leader action for a no-op');
  // The process really is gone: the next judgment, on the new revision, evicts it.
  await sim.runUntil(2000 + 3 * TIMEOUT + 500);
  t.is(rec.offline(INTP_KEY).length, 1);
  t.is(leader.actions.length, 1);
});

test('sim: an eviction decided by a leader that is then deposed is a no-op once a heartbeat committed meanwhile', async (t) => {
  const sim = new SimCluster(3);
  const rec = record(sim);
  const [m1, m2] = sim.members as [SimMember, SimMember];
  sim.elect(m1);
  const intp = await sender(sim, INTP, { origin: 11 });
  await sim.runUntil(2000);
  // The process stalls (a long GC pause): no heartbeats, so m1 decides to evict it.
  await sim.settle(intp.stop({ deregister: false }));
  let held: (() => void) | null = null;
  sim.intercept = (from, cmd, commit) => {
    if (from !== m1 || cmd.op !== 'put' || held) return false;
    held = commit; // replicated slowly: it will commit only later
    return true;
  };
  await sim.runUntil(2000 + TIMEOUT + 500);
  t.truthy(held, 'm1 proposed an eviction');
  sim.intercept = null;
  // m1 is deposed; under m2 the process wakes up and heartbeats again.
  sim.elect(m2);
  const resumed = await sender(sim, INTP, { origin: 12 });
  await sim.runUntil(sim.sched.now + 500);
  held!(); // the old proposal finally commits (Raft may commit an old-term entry) ...
  await sim.runUntil(sim.sched.now + 200);
  t.is(m1.counters.get('monitor_decisions_total', { action: 'evict', outcome: 'casFailed' }), 1, '... as casFailed');
  t.deepEqual(rec.offline(), []);
  t.like(m2.sm.get(INTP_KEY)!.value as object, { STATUS: 'ONLINE' });
  t.deepEqual(m1.actions, []);
  await sim.settle(resumed.stop());
});

test('sim: the leader\'s monotonic clock jumping forward (or the process stalling) evicts nobody', async (t) => {
  const sim = new SimCluster(3);
  const rec = record(sim);
  const leader = sim.members[0]!;
  sim.elect(leader);
  await sender(sim, SERVER, { origin: 1 });
  await sender(sim, INTP, { origin: 2 });
  await sim.runUntil(2000);
  leader.clock.jump(5 * TIMEOUT);
  await sim.runUntil(2000 + 5 * TIMEOUT);
  t.deepEqual(rec.offline(), [], 'nobody evicted');
  t.is(leader.counters.get('monitor_pauses_total'), 1, 'the jump was noticed as a pause');
});

test('sim: a member cut off past timeout + retention is evicted, removed, and registers in full when it is back', async (t) => {
  const sim = new SimCluster(3);
  const rec = record(sim);
  sim.elect(sim.members[0]!);
  const inner = sim.writer();
  let cut = false;
  const writer: MetaWriter = {
    put: (k, v, o) => (cut ? Promise.reject(new NoQuorumError('partitioned')) : inner.put(k, v, o)),
    delete: (k, o) => inner.delete(k, o),
    get: (k) => inner.get(k),
  };
  const intp = await sim.settle(HeartbeatSender.start({
    writer, identity: INTP, heartbeatIntervalMs: INTERVAL, heartbeatTimeoutMs: TIMEOUT, clock: sim.clock(5), wallClock: () => EPOCH + sim.sched.now,
  }));
  await sim.runUntil(1000);
  cut = true;
  await sim.runUntil(1000 + TIMEOUT + RETENTION + 500);
  t.is(rec.offline(INTP_KEY).length, 1);
  t.is(rec.deletes(INTP_KEY).length, 1);
  t.is(sim.members[0]!.sm.get(INTP_KEY), undefined);
  cut = false;
  await sim.runUntil(sim.sched.now + 2 * INTERVAL);
  t.like(sim.members[0]!.sm.get(INTP_KEY)!.value as object, { STATUS: 'ONLINE', INTP_TSERVER_HOST: '10.0.0.2', INTP_TSERVER_PORT: 40001, NODE_NAME: '10.0.0.1:8080' });
  t.is(intp.stats.reregistered, 1);
  t.true(intp.stats.failed > 0);
  await sim.settle(intp.stop());
  t.is(sim.members[0]!.sm.get(INTP_KEY), undefined);
});
