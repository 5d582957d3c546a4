/**
 * The chaos nemesis: a seeded schedule of faults against a LocalCluster whose members were started
 * with --allow-fault-injection. One fault at a time: inject, hold, heal, wait until the cluster has
 * recovered (every member running and agreeing on one leader), stay quiet a while, next fault.
 *
 * Kinds:
 * - kill:       kill -9 one member (the leader half the time), restart it later;
 * - pause:      SIGSTOP one member (the leader half the time), SIGCONT later;
 * - isolate:    one member drops all Raft traffic to and from the other two (a symmetric 1|2 split);
 * - oneWay:     one-way cuts: one member cannot send to (or cannot hear from) one or both others;
 * - nats:       kill -9 (or SIGTERM) one of the three NATS servers, start it again later;
 * - restartAll: kill -9 (or SIGTERM) every member at once, then start them all.
 *
 * Kinds are drawn from a shuffled bag (every kind once per round), so even a short run injects
 * every kind. The schedule's choices come from the seed; its timing is real time, so a seed
 * replays the same sequence of faults, not the same interleaving. Every action is logged with
 * its monotonic time (performance.now() of this process, the workload's clock).
 * The hold and quiet periods are the schedule itself (intended durations), never a stand-in for
 * waiting on a condition: recovery is waited for by observing member status.
 */
import type { ClusterClient, MemberStatus } from '../client.ts';
import type { LocalCluster } from '../local-cluster.ts';
import { createRng, type Rng } from '../sim/rng.ts';

export const FAULT_KINDS = ['kill', 'pause', 'isolate', 'oneWay', 'nats', 'restartAll'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultEvent {
  /** performance.now() of this process. */
  at: number;
  kind: FaultKind | 'heal' | 'recovered' | 'recoveryTimeout' | 'error' | 'final';
  detail: string;
}

export interface NemesisOptions {
  seed: number;
  /** How long a fault is held, ms: [min, max]. */
  holdMs?: [number, number];
  /** Quiet time after recovery before the next fault, ms: [min, max]. */
  quietMs?: [number, number];
  /** How long to wait for recovery after healing before logging recoveryTimeout. */
  recoveryTimeoutMs?: number;
  kinds?: readonly FaultKind[];
  log?: (line: string) => void;
}

export class Nemesis {
  readonly events: FaultEvent[] = [];
  readonly injected: Record<FaultKind, number> = { kill: 0, pause: 0, isolate: 0, oneWay: 0, nats: 0, restartAll: 0 };
  recoveryTimeouts = 0;
  /** Harness problems (a fault that could not be applied, a server that would not start). */
  get errors(): number {
    return this.events.filter((e) => e.kind === 'error').length;
  }
  /** The fault currently applied (null between faults), for progress output. */
  current: string | null = null;
  private readonly rng: Rng;
  private bag: FaultKind[] = [];
  /** Members whose transport faults this nemesis set and has not cleared yet. */
  private readonly faulted = new Set<string>();
  private stopping = false;
  private wake: (() => void) | null = null;
  private running: Promise<void> | null = null;
  private readonly o: Required<Omit<NemesisOptions, 'log'>> & { log: (line: string) => void };

  constructor(private readonly cluster: LocalCluster, private readonly admin: ClusterClient, o: NemesisOptions) {
    this.o = {
      seed: o.seed,
      holdMs: o.holdMs ?? [1000, 4000],
      quietMs: o.quietMs ?? [500, 2500],
      recoveryTimeoutMs: o.recoveryTimeoutMs ?? 60_000,
      kinds: o.kinds ?? FAULT_KINDS,
      log: o.log ?? (() => {}),
    };
    this.rng = createRng(o.seed ^ 0x5eed);
  }

  get ids(): string[] {
    return this.cluster.members.map((m) => m.id);
  }

  /** Starts the schedule in the background; it runs until stop(). */
  start(): void {
    this.running ??= this.loop();
  }

  /** Ends the schedule after the current fault is healed; then makes sure everything is healed. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.running;
    try {
      await this.healAll('final');
    } catch (err) {
      this.note('error', `final heal: ${(err as Error).message}`);
    }
  }

  private note(kind: FaultEvent['kind'], detail: string): void {
    const ev = { at: performance.now(), kind, detail };
    this.events.push(ev);
    this.o.log(`${kind} ${detail}`);
  }

  /** An interruptible pause of the schedule (stop() cuts it short). */
  private hold(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise<void>((res) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        res();
      }
      this.wake = done;
    }).finally(() => (this.wake = null));
  }

  private nextKind(): FaultKind {
    if (this.bag.length === 0) {
      this.bag = [...this.o.kinds];
      for (let i = this.bag.length - 1; i > 0; i--) {
        const j = this.rng.int(0, i);
        [this.bag[i], this.bag[j]] = [this.bag[j]!, this.bag[i]!];
      }
    }
    return this.bag.pop()!;
  }

  private async loop(): Promise<void> {
    // Begin only once the cluster is up, so the first fault hits a working cluster.
    await this.waitRecovered();
    while (!this.stopping) {
      const kind = this.nextKind();
      try {
        await this.inject(kind);
      } catch (err) {
        this.note('error', `${kind}: ${(err as Error).message}`);
      }
      this.current = null;
      try {
        await this.healAll('heal');
      } catch (err) {
        this.note('error', `heal: ${(err as Error).message}`);
      }
      await this.waitRecovered();
      await this.hold(this.rng.int(...this.o.quietMs));
    }
  }

  private async leaderId(): Promise<string | null> {
    try {
      const all = await this.admin.status();
      return all.find((s) => s.role === 'leader')?.id ?? null;
    } catch {
      return null;
    }
  }

  private async victim(): Promise<string> {
    const leader = this.rng.chance(0.5) ? await this.leaderId() : null;
    return leader ?? this.rng.pick(this.ids);
  }

  private member(id: string) {
    return this.cluster.members.find((m) => m.id === id)!;
  }

  private async inject(kind: FaultKind): Promise<void> {
    const holdMs = this.rng.int(...this.o.holdMs);
    switch (kind) {
      case 'kill': {
        const id = await this.victim();
        this.current = `kill ${id}`;
        await this.member(id).kill9();
        this.injected.kill++;
        this.note('kill', `kill -9 ${id} (pid gone); restart in ${holdMs} ms`);
        await this.hold(holdMs);
        this.member(id).start();
        this.note('heal', `started ${id} (pid ${this.member(id).pid})`);
        return;
      }
      case 'pause': {
        const id = await this.victim();
        const m = this.member(id);
        this.current = `pause ${id}`;
        m.pause();
        this.injected.pause++;
        this.note('pause', `SIGSTOP ${id} (pid ${m.pid}) for ${holdMs} ms`);
        try {
          await this.hold(holdMs);
        } finally {
          m.resume();
          this.note('heal', `SIGCONT ${id}`);
        }
        return;
      }
      case 'isolate': {
        const id = this.rng.pick(this.rng.chance(0.5) ? [(await this.leaderId()) ?? this.rng.pick(this.ids)] : this.ids);
        const others = this.ids.filter((x) => x !== id);
        this.current = `isolate ${id}`;
        await this.fault(id, { dropTo: others, dropFrom: others });
        this.injected.isolate++;
        this.note('isolate', `${id} | ${others.join(',')} (both directions) for ${holdMs} ms`);
        await this.hold(holdMs);
        return;
      }
      case 'oneWay': {
        const id = this.rng.chance(0.5) ? ((await this.leaderId()) ?? this.rng.pick(this.ids)) : this.rng.pick(this.ids);
        const others = this.ids.filter((x) => x !== id);
        const cut = this.rng.chance(0.5) ? others : [this.rng.pick(others)];
        const outbound = this.rng.chance(0.5);
        this.current = `oneWay ${id} ${outbound ? '->' : '<-'} ${cut.join(',')}`;
        await this.fault(id, outbound ? { dropTo: cut } : { dropFrom: cut });
        this.injected.oneWay++;
        this.note('oneWay', `${id} ${outbound ? 'cannot send to' : 'cannot hear from'} ${cut.join(',')} for ${holdMs} ms`);
        await this.hold(holdMs);
        return;
      }
      case 'nats': {
        const i = this.rng.int(0, this.cluster.nats.urls.length - 1);
        const hard = this.rng.chance(0.5);
        this.current = `nats ${i}`;
        await (hard ? this.cluster.nats.killServer(i) : this.cluster.nats.stopServer(i));
        this.injected.nats++;
        this.note('nats', `${hard ? 'kill -9' : 'SIGTERM'} NATS server ${i} (${this.cluster.nats.urls[i]}) for ${holdMs} ms`);
        await this.hold(holdMs);
        await this.cluster.nats.startServer(i);
        this.note('heal', `NATS server ${i} started and routed`);
        return;
      }
      case 'restartAll': {
        const hard = this.rng.chance(0.5);
        const downMs = this.rng.int(0, 1000);
        this.current = 'restartAll';
        await Promise.all(this.cluster.members.map((m) => (hard ? m.kill9() : m.stop())));
        this.injected.restartAll++;
        this.note('restartAll', `${hard ? 'kill -9' : 'SIGTERM'} every member; start again in ${downMs} ms`);
        await this.hold(downMs);
        for (const m of this.cluster.members) m.start();
        this.note('heal', `started every member`);
        return;
      }
    }
  }

  /** Sets a member's transport fault, retrying briefly (a member may be busy electing). */
  private async fault(id: string, f: { dropTo?: string[]; dropFrom?: string[] }): Promise<void> {
    const deadline = performance.now() + 10_000;
    const clearing = !f.dropTo?.length && !f.dropFrom?.length;
    for (;;) {
      try {
        await this.admin.injectFault(id, f);
        if (clearing) this.faulted.delete(id);
        else this.faulted.add(id);
        return;
      } catch (err) {
        if (performance.now() > deadline || (this.stopping && !clearing)) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /**
   * Heals everything: SIGCONT every member, start any that are down, start any stopped NATS server,
   * clear the transport faults this nemesis set (a restarted member starts without any). Safe to
   * call at any time.
   */
  async healAll(why: 'heal' | 'final'): Promise<void> {
    const actions: string[] = [];
    for (const m of this.cluster.members) {
      if (m.running) m.resume(); // harmless on a running process; never leave one stopped
      else {
        m.start();
        this.faulted.delete(m.id);
        actions.push(`started ${m.id}`);
      }
    }
    for (const [i, s] of this.cluster.nats.servers.entries()) {
      if (!s.running) {
        await this.cluster.nats.startServer(i);
        actions.push(`started NATS ${i}`);
      }
    }
    for (const id of [...this.faulted]) {
      try {
        await this.fault(id, {});
        actions.push(`cleared faults on ${id}`);
      } catch (err) {
        // Recovery notices faults still set (member status) and clears them then.
        actions.push(`could not clear faults on ${id} yet: ${(err as Error).message}`);
      }
    }
    if (why === 'final' || actions.length) this.note(why === 'final' ? 'final' : 'heal', actions.length ? actions.join('; ') : 'all healed');
  }

  /** Waits (observing member status) until all members run, answer, and agree on one leader with no faults set. */
  async waitRecovered(): Promise<boolean> {
    const started = performance.now();
    const deadline = started + this.o.recoveryTimeoutMs;
    let last = 'no status yet';
    for (;;) {
      const all = await this.statusOfAll();
      const verdict = recovered(all, this.ids.length);
      if (verdict === true) {
        this.note('recovered', `leader ${all.find((s) => s.role === 'leader')!.id} after ${Math.round(performance.now() - started)} ms`);
        return true;
      }
      last = verdict;
      // A member that still has transport faults (its clearing request was lost) gets them cleared again.
      for (const st of all) if (st.faults.dropTo.length || st.faults.dropFrom.length) await this.admin.injectFault(st.id, {}).catch(() => {});
      if (performance.now() > deadline) {
        this.recoveryTimeouts++;
        this.note('recoveryTimeout', `not recovered within ${this.o.recoveryTimeoutMs} ms: ${last}`);
        return false;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async statusOfAll(): Promise<MemberStatus[]> {
    return (await Promise.all(this.ids.map((id) => this.admin.status(id).then((s) => s[0]!, () => null)))).filter((s): s is MemberStatus => s !== null);
  }
}

/** true, or why not. */
export function recovered(all: MemberStatus[], expect: number): true | string {
  if (all.length < expect) return `${all.length}/${expect} members answer`;
  const leaders = all.filter((s) => s.role === 'leader');
  if (leaders.length !== 1) return `${leaders.length} leaders`;
  const l = leaders[0]!;
  if (!all.every((s) => s.leader === l.id && s.term === l.term)) return `members disagree on the leader: ${all.map((s) => `${s.id}:${s.leader}@${s.term}`).join(' ')}`;
  const faulty = all.filter((s) => s.faults.dropTo.length || s.faults.dropFrom.length);
  if (faulty.length) return `faults still set on ${faulty.map((s) => s.id).join(',')}`;
  return true;
}
