import { RaftNode } from '../../actors/node.ts';
import { checkLinearizability, type HistoryOp, type RegisterOp } from '../check/linearizability.ts';
import type { RaftConfig } from '../raft/state.ts';
import { encodeKvCommand, KvStateMachine, type KvResult } from '../sm/kv.ts';
import { DiskRaftStorage } from '../storage/raft-storage.ts';
import { SimFileSystem } from '../storage/sim-fs.ts';
import { NotLeaderError } from '../errors.ts';
import type { RaftMessage } from '../raft/messages.ts';
import type { ConfChange, ConfState } from '../raft/types.ts';
import { InvariantViolation, SafetyChecker } from './invariants.ts';
import { SimNetwork } from './network.ts';
import { createRng, type Rng } from './rng.ts';
import { NodeClock, Scheduler } from './scheduler.ts';

export interface SimOptions {
  seed: number;
  nodes?: number;
  clients?: number;
  faultMs?: number;
  /** After healing, a leader must commit a write and all client operations must end within this. */
  livenessMs?: number;
  trace?: (line: string) => void;
  raft?: Partial<RaftConfig>;
  /**
   * Also perform single-server membership changes while the faults happen: add a new empty node
   * as a learner, promote it once caught up, remove a voter (the leader too), re-add a removed one.
   * Requests go to whoever is leader and may fail; the schedule simply tries again later.
   */
  membership?: boolean;
  /**
   * Also fail disks: for a while every write and fsync of one node's disk throws ENOSPC or EIO. The
   * node halts at its next write (fail-stop, as a member process exits); once the disk works again
   * it restarts from what was synced (unsynced writes count as lost, the worst case after a failed
   * fsync). No acknowledged write may be lost. Off by default so existing seeds keep their schedules.
   */
  diskFaults?: boolean;
  /**
   * A scripted scenario instead of the random fault schedule. It runs in virtual time; when it
   * returns, the network heals and the usual liveness and safety checks follow.
   */
  script?: (c: SimControl) => Promise<void>;
}

/** What a scripted scenario can do (all in virtual time). */
export interface SimControl {
  readonly now: number;
  sleep(ms: number): Promise<void>;
  /** Ids of every node started so far (members or not). */
  ids(): string[];
  node(id: string): RaftNode<KvResult> | null;
  sm(id: string): KvStateMachine | null;
  /** The live node claiming leadership with the highest term, if any. */
  leader(): string | null;
  /** Wait until some node (among `among`, if given) is leader; throws after timeoutMs. */
  waitForLeader(timeoutMs?: number, among?: readonly string[]): Promise<string>;
  crash(id: string): void;
  restart(id: string): Promise<void>;
  partition(a: readonly string[], b: readonly string[]): void;
  cutLink(from: string, to: string): void;
  /** A slow disk: every fdatasync of `id` takes 5–45 ms of virtual time (unsynced data is lost on crash). */
  slowDisk(id: string, on: boolean): void;
  heal(): void;
  /** Start a new node with an empty disk (not a member yet); returns its id. */
  addNode(): Promise<string>;
  /** Ask the current leader for a change, retrying on NotLeader / MembershipError until timeoutMs. */
  changeMembership(change: ConfChange, timeoutMs?: number): Promise<void>;
  /** Commit a put through the current leader (retrying); resolves once applied on the leader. */
  put(key: string, value: string, timeoutMs?: number): Promise<void>;
  /** Call fn for every message delivered from now on. */
  watch(fn: (m: RaftMessage) => void): void;
  log(line: string): void;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  error?: string;
  nodes: number;
  virtualMs: number;
  events: number;
  messages: number;
  ops: number;
  okOps: number;
  faults: number;
  elections: number;
  commitIndex: number;
  snapshotsInstalled: number;
  crashes: number;
  /** Membership changes that committed (membership mode and scripts). */
  membershipChanges: number;
  /** The configuration in force at the end (the final leader's), if a leader was found. */
  finalConf: ConfState | null;
  finalLeader: string | null;
  maxTerm: number;
}

interface SimMember {
  id: string;
  fs: SimFileSystem;
  clock: NodeClock;
  node: RaftNode<KvResult> | null;
  sm: KvStateMachine | null;
  slowDisk: boolean;
  restarting: boolean;
  bootstrap: ConfState;
}

const ELECTION = { min: 150, max: 300 };

/** One seeded run: N members on simulated disks and network, clients, a fault schedule, checks. */
export async function runSimulation(o: SimOptions): Promise<SimResult> {
  const rng = createRng(o.seed);
  const n = o.nodes ?? rng.pick([3, 3, 5]);
  /** Every node started so far; grows when membership changes add new nodes. */
  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  const initialConf: ConfState = { voters: [...ids], learners: [] };
  const sched = new Scheduler();
  const net = new SimNetwork(sched, rng.fork());
  const safety = new SafetyChecker();
  const trace = o.trace;
  const log = (s: string) => trace?.(`${(sched.now / 1000).toFixed(3).padStart(8)}s ${s}`);
  const history: HistoryOp[] = [];
  const stats = { faults: 0, elections: 0, snapshots: 0, crashes: 0, membershipChanges: 0 };
  let failure: Error | null = null;
  const fail = (e: unknown) => {
    failure ??= e instanceof Error ? e : new Error(String(e));
  };
  const watchers: ((m: RaftMessage) => void)[] = [];
  if (trace || o.script) {
    net.onDeliver = (m) => {
      if (trace) log(`${m.from} -> ${m.to} ${describe(m)}`);
      for (const w of watchers) w(m);
    };
  }

  function newMember(id: string, bootstrap: ConfState, diskRng: Rng): SimMember {
    const m: SimMember = { id, fs: null!, clock: new NodeClock(sched), node: null, sm: null, slowDisk: false, restarting: false, bootstrap };
    m.fs = new SimFileSystem({
      schedule: (ms, fn) => void sched.after(ms, fn),
      syncDelayMs: () => (m.slowDisk ? 5 + diskRng() * 40 : 0),
    });
    return m;
  }
  const members: SimMember[] = ids.map((id) => newMember(id, initialConf, rng.fork()));
  const byId = (id: string): SimMember | undefined => members.find((m) => m.id === id);
  /** Raft state of a live node, or null when it is down (its disk holds what it had). */
  const stateOf = (id: string) => byId(id)?.node?.state ?? null;

  function currentLeader(): SimMember | undefined {
    let best: SimMember | undefined;
    for (const m of members) {
      const st = m.node?.status();
      if (st?.role === 'leader' && (!best || st.term > best.node!.status().term)) best = m;
    }
    return best;
  }

  async function boot(m: SimMember): Promise<void> {
    const sm = new KvStateMachine();
    const storage = new DiskRaftStorage({ fs: m.fs.session(), dir: `/data/${m.id}` });
    const node = await RaftNode.start<KvResult>({
      id: m.id, bootstrap: m.bootstrap, storage, stateMachine: sm, transport: net.transport(m.id),
      clock: m.clock, random: rng.fork(), electionTimeoutMs: ELECTION, heartbeatIntervalMs: 50,
      snapshotEveryEntries: 40, raft: { snapshotChunkBytes: 256, maxEntriesPerMsg: 16, maxInflight: 8, ...o.raft },
    });
    if (node.recovery && node.recovery.truncatedBytes > 0) log(`${m.id} recovery truncated ${node.recovery.truncatedBytes} bytes`);
    safety.onRestore(m.id, node.status().appliedIndex);
    let role = node.status().role;
    let checkedCommit = 0;
    let prevConf = node.state.conf;
    node.onChange((x) => {
      const st = x.status();
      if (st.role !== role) {
        log(`${m.id} ${role} -> ${st.role} term ${st.term}`);
        role = st.role;
        if (st.role === 'leader') {
          stats.elections++;
          // Only commits this leader makes are checked against its configuration; the commit
          // index it inherited was reached under earlier leaders' configurations.
          checkedCommit = st.commitIndex;
          try {
            safety.onLeader(m.id, st.term);
            safety.checkElectionQuorum(m.id, x.state, stateOf);
            safety.checkLeaderLog(m.id, x.state);
          } catch (e) {
            fail(e);
          }
        }
      }
      if (st.role === 'leader' && st.commitIndex > checkedCommit) {
        checkedCommit = st.commitIndex;
        try {
          safety.checkCommitQuorum(m.id, x.state, stateOf, [prevConf, x.state.conf]);
        } catch (e) {
          fail(e);
        }
      }
      prevConf = x.state.conf;
      if (x.fatal && !diskFailing(m)) fail(x.fatal);
    });
    node.onFatal((err) => {
      if (!diskFailing(m)) return fail(err);
      // Fail-stop: the process is gone until the disk works again (see diskFault below).
      log(`${m.id} halted on ${(err as { code?: string }).code ?? err.message}: fail-stop`);
      if (m.node === node) {
        m.node = null;
        m.sm = null;
      }
    });
    let lastApplied = node.status().appliedIndex;
    node.onApply((e) => {
      try {
        if (e.index !== lastApplied + 1) {
          // A snapshot from the leader moved us forward.
          safety.onRestore(m.id, e.index - 1);
          stats.snapshots++;
        }
        lastApplied = e.index;
        safety.onApply(m.id, e);
      } catch (err) {
        fail(err);
      }
    });
    m.node = node;
    m.sm = sm;
  }

  function crash(m: SimMember): void {
    if (!m.node) return;
    log(`FAULT crash ${m.id}`);
    stats.crashes++;
    m.node.halt();
    m.node = null;
    m.sm = null;
    m.fs.crash(rng);
  }

  async function restart(m: SimMember): Promise<void> {
    if (m.node || m.restarting) return;
    m.restarting = true;
    log(`FAULT restart ${m.id}`);
    try {
      await boot(m);
    } catch (e) {
      // A member cannot start on a failed disk: it stays down until the disk works (diskWorks).
      if (diskFailing(m)) log(`${m.id} could not start: ${(e as Error).message}`);
      else fail(e);
    } finally {
      m.restarting = false;
    }
  }

  // ---- clients: put/append/get with sessions, retries and a recorded history ----
  const keys = ['a', 'b', 'c'];
  let opId = 0;
  let stopClients = false;
  let activeOps = 0;
  const clients = o.clients ?? 3;

  async function call<T>(fn: (m: SimMember) => Promise<T> | undefined, timeoutMs: number, prefer: { leader: string }): Promise<T> {
    const deadline = sched.now + timeoutMs;
    let attempt = 0;
    for (;;) {
      const target = members.find((x) => x.id === prefer.leader && x.node) ?? rng.pick(members);
      const p = target.node ? fn(target) : undefined;
      let outcome: { ok: true; v: T } | { ok: false; e: unknown };
      if (!p) outcome = { ok: false, e: new Error('down') };
      else {
        outcome = await new Promise((resolve) => {
          const t = sched.after(Math.min(500, Math.max(1, deadline - sched.now)), () => resolve({ ok: false, e: new Error('timeout') }));
          p.then((v) => ((t.cancelled = true), resolve({ ok: true, v })), (e) => ((t.cancelled = true), resolve({ ok: false, e })));
        });
      }
      if (outcome.ok) return outcome.v;
      const e = outcome.e;
      if (e instanceof NotLeaderError && e.leader) prefer.leader = e.leader;
      else prefer.leader = rng.pick(ids);
      if (sched.now >= deadline) throw e;
      attempt++;
      await new Promise<void>((r) => sched.after(10 + Math.min(attempt, 5) * 10, r));
    }
  }

  async function client(c: number): Promise<void> {
    const name = `c${c}`;
    let seq = 0;
    const prefer = { leader: ids[0]! };
    while (!stopClients) {
      const key = rng.pick(keys);
      const kind = rng.int(0, 9);
      const id = opId++;
      activeOps++;
      if (kind < 4) {
        const value = `${name}.${id}`;
        const op: RegisterOp = kind < 2 ? { type: 'put', value } : { type: 'append', value: `,${value}` };
        const rec: HistoryOp = { id, client: name, key, op, invokeAt: sched.now, completeAt: null, status: 'info' };
        history.push(rec);
        const cmd = encodeKvCommand(op.type === 'put'
          ? { op: 'put', key, value, session: { client: name, seq: ++seq } }
          : { op: 'append', key, value: `,${value}`, session: { client: name, seq: ++seq } });
        try {
          const r = await call((m) => m.node?.propose(cmd), 3000, prefer);
          if (r.result.ok) {
            rec.status = 'ok';
            rec.completeAt = sched.now;
            if (op.type === 'append') rec.result = (r.result as { value: string }).value;
          }
        } catch {
          /* outcome unknown: stays info */
        }
      } else {
        const rec: HistoryOp = { id, client: name, key, op: { type: 'get' }, invokeAt: sched.now, completeAt: null, status: 'fail' };
        history.push(rec);
        try {
          const value = await call(async (m) => {
            await m.node!.readIndex();
            if (!m.sm) throw new Error('down');
            return m.sm.get(key);
          }, 1500, prefer);
          rec.status = 'ok';
          rec.completeAt = sched.now;
          rec.result = value;
        } catch {
          /* a failed read has no effect */
        }
      }
      activeOps--;
      await new Promise<void>((r) => sched.after(rng.int(0, 30), r));
    }
  }

  // ---- faults ----
  const faultMs = o.faultMs ?? 3000;
  function scheduleFaults(): void {
    let t = 300;
    while (t < faultMs) {
      const at = t;
      const kind = rng.int(0, 11);
      const victim = rng.pick(members);
      sched.at(at, () => {
        stats.faults++;
        switch (kind) {
          case 0:
          case 1: {
            crash(victim);
            sched.after(rng.int(50, 1500), () => void restart(victim));
            break;
          }
          case 2: {
            const k = rng.int(1, Math.floor(ids.length / 2));
            const shuffled = [...ids].sort(() => rng() - 0.5);
            const a = shuffled.slice(0, k);
            const b = shuffled.slice(k);
            log(`FAULT partition [${a}] | [${b}]`);
            net.partition(a, b);
            break;
          }
          case 3: {
            const to = rng.pick(ids.filter((x) => x !== victim.id));
            log(`FAULT cut ${victim.id} -> ${to}`);
            net.cutLink(victim.id, to);
            break;
          }
          case 4:
          case 5:
            log('FAULT heal network');
            net.heal();
            break;
          case 6:
            net.faults = { dropRate: rng() * 0.3, duplicateRate: rng() * 0.2, minDelayMs: 0.1, maxDelayMs: rng.int(1, 60) };
            log(`FAULT network ${JSON.stringify(net.faults)}`);
            break;
          case 7:
            victim.slowDisk = !victim.slowDisk;
            log(`FAULT ${victim.id} slow disk ${victim.slowDisk}`);
            break;
          case 8:
            victim.clock.setRate(rng.pick([1, 1.5, 2, 4]));
            log(`FAULT ${victim.id} clock rate ${victim.clock.rate}`);
            break;
          case 9: {
            const ms = rng.int(100, 5000);
            victim.clock.jump(ms);
            log(`FAULT ${victim.id} clock jumps ${ms}ms`);
            break;
          }
          case 10: {
            const leader = members.find((x) => x.node?.status().role === 'leader');
            const to = rng.pick(ids);
            if (leader?.node) {
              log(`FAULT transfer leadership ${leader.id} -> ${to}`);
              leader.node.transferLeadership(to);
            }
            break;
          }
          default:
            if (o.diskFaults) diskFault(victim);
            break;
        }
      });
      t += rng.int(50, 600);
    }
  }

  /** Fails the victim's disk, and half the time a second node's too (losing a majority's unsynced writes). */
  function diskFault(victim: SimMember): void {
    const victims = rng() < 0.5 ? [victim] : [victim, rng.pick(members.filter((x) => x !== victim))];
    for (const m of victims) {
      if (diskFailing(m)) continue;
      const kind = rng.pick(['ENOSPC', 'EIO', 'fsync EIO'] as const);
      if (kind === 'fsync EIO') m.fs.syncFault = true;
      else m.fs.writeFault = kind;
      log(`FAULT ${m.id} disk ${kind}`);
      sched.after(rng.int(100, 1500), () => diskWorks(m));
    }
  }

  function diskFailing(m: SimMember): boolean {
    return m.fs.writeFault !== null || m.fs.syncFault;
  }

  /** The disk works again; a node that halted on it restarts from what was synced. */
  function diskWorks(m: SimMember): void {
    if (!diskFailing(m)) return;
    m.fs.writeFault = null;
    m.fs.syncFault = false;
    log(`FAULT ${m.id} disk works again`);
    if (!m.node && !m.restarting) {
      m.fs.crash(rng);
      void restart(m);
    }
  }

  // ---- membership changes ----
  const spareIds = [`n${n + 1}`, `n${n + 2}`];

  async function addNode(): Promise<SimMember | undefined> {
    const id = spareIds.shift();
    if (!id) return undefined;
    const m = newMember(id, { voters: [], learners: [] }, rng.fork());
    members.push(m);
    ids.push(id);
    log(`MEMBERSHIP start new node ${id} (empty disk)`);
    await restart(m);
    return m;
  }

  /** Send a change to the current leader; resolves true once it committed, false on any error. */
  function requestChange(leader: SimMember, change: ConfChange): Promise<boolean> {
    const p = leader.node?.changeMembership(change);
    if (!p) return Promise.resolve(false);
    log(`MEMBERSHIP ${leader.id} <- ${change.op} ${change.node}`);
    return p.then(
      (r) => {
        stats.membershipChanges++;
        log(`MEMBERSHIP ${change.op} ${change.node} committed at ${r.index}`);
        return true;
      },
      (e: Error) => {
        log(`MEMBERSHIP ${change.op} ${change.node} failed: ${e.name}: ${e.message}`);
        return false;
      },
    );
  }

  /** One step of the random membership schedule, against the leader's (latest) configuration. */
  function membershipStep(mrng: Rng): void {
    const leader = currentLeader();
    if (!leader?.node) return;
    const conf = leader.node.state.conf;
    const nonMembers = members.filter((m) => !conf.voters.includes(m.id) && !conf.learners.includes(m.id));
    const r = mrng();
    if (conf.learners.length && r < 0.8) {
      const learner = mrng.pick(conf.learners);
      // A learner that never catches up (crashed, cut off) is eventually dropped again.
      void requestChange(leader, mrng.chance(0.85) ? { op: 'promote', node: learner } : { op: 'remove', node: learner });
    } else if (conf.voters.length > 1 && (r < 0.5 ? conf.voters.length > 2 : conf.voters.length > 3 || mrng.chance(0.15))) {
      // Remove a voter; a third of the time the leader itself.
      const victim = mrng.chance(0.33) ? leader.id : mrng.pick(conf.voters);
      void requestChange(leader, { op: 'remove', node: victim });
    } else {
      // Add: re-add a removed node (its disk kept as it was) or start a new empty one.
      const readd = nonMembers.length && (spareIds.length === 0 || mrng.chance(0.5)) ? mrng.pick(nonMembers) : undefined;
      if (readd) void requestChange(leader, { op: 'addLearner', node: readd.id });
      else
        void addNode().then((m) => {
          const l = currentLeader();
          if (m && l) void requestChange(l, { op: 'addLearner', node: m.id });
        });
    }
  }

  function scheduleMembership(): void {
    const mrng = rng.fork();
    let t = 200;
    while (t < faultMs) {
      sched.at(t, () => membershipStep(mrng));
      t += mrng.int(100, 500);
    }
  }

  // ---- scripted scenarios ----
  const control: SimControl = {
    get now() {
      return sched.now;
    },
    sleep: (ms) => new Promise<void>((r) => void sched.after(ms, r)),
    ids: () => [...ids],
    node: (id) => byId(id)?.node ?? null,
    sm: (id) => byId(id)?.sm ?? null,
    leader: () => currentLeader()?.id ?? null,
    async waitForLeader(timeoutMs = 5000, among) {
      const deadline = sched.now + timeoutMs;
      for (;;) {
        const l = members.filter((m) => m.node?.status().role === 'leader' && (!among || among.includes(m.id)));
        if (l.length) return l.sort((a, b) => b.node!.status().term - a.node!.status().term)[0]!.id;
        if (sched.now >= deadline) throw new Error(`no leader${among ? ` among ${among}` : ''} within ${timeoutMs}ms`);
        await control.sleep(10);
      }
    },
    crash: (id) => crash(byId(id)!),
    restart: (id) => restart(byId(id)!),
    partition: (a, b) => {
      log(`SCRIPT partition [${a}] | [${b}]`);
      net.partition(a, b);
    },
    cutLink: (from, to) => {
      log(`SCRIPT cut ${from} -> ${to}`);
      net.cutLink(from, to);
    },
    slowDisk: (id, on) => {
      log(`SCRIPT ${id} slow disk ${on}`);
      byId(id)!.slowDisk = on;
    },
    heal: () => {
      log('SCRIPT heal network');
      net.heal();
    },
    async addNode() {
      const m = await addNode();
      if (!m) throw new Error('no spare node id left');
      return m.id;
    },
    async changeMembership(change, timeoutMs = 5000) {
      const deadline = sched.now + timeoutMs;
      for (;;) {
        const leader = currentLeader();
        if (leader && (await requestChange(leader, change))) return;
        if (sched.now >= deadline) throw new Error(`membership change ${change.op} ${change.node} did not commit within ${timeoutMs}ms`);
        await control.sleep(50);
      }
    },
    async put(key, value, timeoutMs = 5000) {
      await call((m) => m.node?.propose(encodeKvCommand({ op: 'put', key, value })), timeoutMs, { leader: currentLeader()?.id ?? ids[0]! });
    },
    watch: (fn) => void watchers.push(fn),
    log: (line) => log(`SCRIPT ${line}`),
  };

  function healAll(): void {
    log('HEAL everything');
    net.heal();
    net.faults = { dropRate: 0, duplicateRate: 0, minDelayMs: 0.2, maxDelayMs: 2 };
    for (const m of members) {
      m.slowDisk = false;
      m.clock.setRate(1);
      diskWorks(m);
      if (!m.node) void restart(m);
    }
  }

  // ---- run ----
  const livenessMs = o.livenessMs ?? 6000;
  /**
   * Let every pending microtask (the node actors' promise chains) run to completion. A nextTick
   * queued from a microtask runs only once the whole microtask queue, including tasks queued
   * meanwhile, is empty: the same point a setImmediate would resume at, without a trip through the
   * event loop (which cost ~30% of the CPU time). Every 512 events we still yield to the event
   * loop so the process stays responsive (test runner IPC, timeouts).
   */
  let drains = 0;
  const drain = (): Promise<void> =>
    new Promise((r) => ((++drains & 511) === 0 ? setImmediate(r) : queueMicrotask(() => process.nextTick(r))));
  let events = 0;
  let sameTimeEvents = 0;
  let lastTime = -1;
  async function runUntil(time: number, stop?: () => boolean): Promise<void> {
    while (!failure && !(stop?.())) {
      if (!sched.step(time)) break;
      events++;
      sameTimeEvents = sched.now === lastTime ? sameTimeEvents + 1 : 0;
      lastTime = sched.now;
      if (sameTimeEvents > 100_000) fail(new InvariantViolation(`runaway: 100000 events at virtual time ${sched.now}`));
      await drain();
    }
    if (sched.now < time && !stop?.()) sched.now = time;
  }

  let finalConf: ConfState | null = null;
  let finalLeader: string | null = null;
  /** Members of the configuration in force at the end (all nodes until it is known). */
  let finalMembers = (): SimMember[] => members;
  try {
    for (const m of members) await boot(m);
    if (!o.script) {
      scheduleFaults();
      if (o.membership) scheduleMembership();
    }
    for (let c = 0; c < clients; c++) void client(c);
    if (o.script) {
      let done = false;
      o.script(control).then(
        () => void (done = true),
        (e) => fail(e),
      );
      const limit = o.faultMs ?? 60_000;
      await runUntil(limit, () => done);
      if (!done) fail(new Error(`script did not finish within ${limit}ms of virtual time`));
    } else {
      await runUntil(faultMs);
    }
    healAll();
    const healedAt = sched.now;
    await runUntil(healedAt + 50);
    stopClients = true;
    // Liveness: after healing, a leader commits a fresh write and every client op finishes.
    let committed = false;
    const probe = async () => {
      const prefer = { leader: ids[0]! };
      await call((m) => m.node?.propose(encodeKvCommand({ op: 'put', key: 'probe', value: 'p' })), livenessMs, prefer);
      committed = true;
    };
    void probe().catch(() => undefined);
    await runUntil(healedAt + livenessMs, () => committed && activeOps === 0);
    if (!failure && !committed) fail(new InvariantViolation(`liveness: no write committed within ${livenessMs}ms after healing`));
    if (!failure && activeOps) fail(new InvariantViolation(`liveness: ${activeOps} client operations still pending`));
    // A leader that just committed its own removal steps down right after the probe commits: give
    // the rest of the cluster its election (bounded) before asking who leads.
    await runUntil(sched.now + livenessMs, () => {
      const l = currentLeader()?.node?.state;
      return !!l && l.confIndex <= l.log.committed;
    });
    // The configuration in force at the end: the leader's, once its last change committed (the
    // probe write committed after it). Removed nodes are not expected to catch up.
    const finalLeaderMember = currentLeader();
    if (finalLeaderMember?.node) {
      const st = finalLeaderMember.node.state;
      finalLeader = finalLeaderMember.id;
      finalConf = { voters: [...st.conf.voters], learners: [...st.conf.learners] };
      if (!failure && st.confIndex > st.log.committed) fail(new InvariantViolation(`liveness: membership change at ${st.confIndex} not committed after healing`));
      const inConf = new Set([...st.conf.voters, ...st.conf.learners]);
      finalMembers = () => members.filter((m) => inConf.has(m.id));
    } else if (!failure) fail(new InvariantViolation('liveness: no leader after healing'));
    // Convergence: every member of the final configuration applies everything committed.
    const target = Math.max(...finalMembers().map((m) => m.node?.status().commitIndex ?? 0));
    await runUntil(sched.now + livenessMs, () => finalMembers().every((m) => (m.node?.status().appliedIndex ?? 0) >= target));
    if (!failure) {
      const lagging = finalMembers().filter((m) => (m.node?.status().appliedIndex ?? 0) < target);
      if (lagging.length) fail(new InvariantViolation(`liveness: ${lagging.map((m) => m.id)} did not catch up to ${target}`));
    }
    if (!failure) {
      safety.checkLogMatching(members.filter((m) => m.node).map((m) => ({ id: m.id, state: m.node!.state })));
      const digests = new Set(finalMembers().map((m) => m.sm!.appliedDigest()));
      if (digests.size !== 1) fail(new InvariantViolation('state machines diverged after convergence'));
    }
    if (!failure) {
      // Final reads of every key complete the history: an acknowledged write that was lost shows here.
      for (const key of keys) {
        const leader = members.find((m) => m.node?.status().role === 'leader') ?? members[0]!;
        history.push({ id: opId++, client: 'final', key, op: { type: 'get' }, invokeAt: sched.now, completeAt: sched.now + 0.001, status: 'ok', result: leader.sm!.get(key) });
      }
      const lin = checkLinearizability(history);
      if (lin.ok === false) fail(new InvariantViolation(`linearizability: key ${lin.key}: ${lin.reason}`));
    }
  } catch (e) {
    fail(e);
  } finally {
    for (const m of members) m.node?.halt();
  }
  return {
    seed: o.seed,
    ok: !failure,
    error: failure ? `${(failure as Error).name}: ${(failure as Error).message}` : undefined,
    nodes: n,
    virtualMs: Math.round(sched.now),
    events,
    messages: net.sent,
    ops: history.length,
    okOps: history.filter((h) => h.status === 'ok').length,
    faults: stats.faults,
    elections: stats.elections,
    commitIndex: Math.max(...members.map((m) => m.node?.status().commitIndex ?? 0)),
    snapshotsInstalled: stats.snapshots,
    crashes: stats.crashes,
    membershipChanges: stats.membershipChanges,
    finalConf,
    finalLeader,
    maxTerm: Math.max(...members.map((m) => m.node?.status().term ?? 0)),
  };
}

function describe(m: RaftMessage): string {
  switch (m.type) {
    case 'vote':
      return `${m.pre ? 'PreVote' : 'Vote'} t${m.term} last=${m.lastLogIndex}/${m.lastLogTerm}`;
    case 'voteResp':
      return `${m.pre ? 'PreVote' : 'Vote'}Resp t${m.term} ${m.granted ? 'granted' : 'denied'}`;
    case 'append':
      return `Append t${m.term} prev=${m.prevLogIndex}/${m.prevLogTerm} n=${m.entries.length} commit=${m.commit}`;
    case 'appendResp':
      return `AppendResp t${m.term} ${m.success ? `ok match=${m.matchIndex}` : `reject ${m.matchIndex} hint=${m.conflictIndex}/${m.conflictTerm}`}`;
    case 'snapshot':
      return `Snapshot t${m.term} idx=${m.meta.index} off=${m.offset} len=${m.data.length}${m.done ? ' done' : ''}`;
    case 'snapshotResp':
      return `SnapshotResp t${m.term} idx=${m.snapshotIndex} next=${m.nextOffset}${m.installed ? ' installed' : ''}${m.rejected ? ' rejected' : ''}`;
    case 'timeoutNow':
      return `TimeoutNow t${m.term}`;
  }
}
