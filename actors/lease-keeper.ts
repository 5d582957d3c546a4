/**
 * Lease expiry, decided by the leader alone on its own monotonic clock and carried out through
 * the log (a leaseRevoke entry), so every replica removes the same keys at the same revision.
 * Keep-alives go to the leader and are not logged. A new leader first grants every lease one
 * full TTL from its own start: it cannot know when the old leader last heard from a holder.
 */
import { NotLeaderError } from '../src/errors.ts';
import type { MetadataStateMachine } from '../src/sm/metadata.ts';
import type { Clock, Logger } from './ports.ts';

export interface LeaseKeeperOptions {
  sm: MetadataStateMachine;
  clock: Clock;
  isLeader(): boolean;
  leaderHint(): string | null;
  /** Proposes leaseRevoke for `id`; resolves once applied (or rejects). */
  revoke(id: number): Promise<unknown>;
  checkEveryMs?: number;
  logger: Logger;
}

export class LeaseKeeper {
  private deadlines = new Map<number, number>();
  private revoking = new Set<number>();
  private wasLeader = false;
  private timer: unknown = null;

  constructor(private readonly o: LeaseKeeperOptions) {
    this.schedule();
  }

  /** Extends a lease by its TTL; returns the TTL. Only the leader answers. */
  keepAlive(id: number): number {
    if (!this.o.isLeader()) throw new NotLeaderError(this.o.leaderHint());
    const lease = this.o.sm.lease(id);
    if (!lease) throw Object.assign(new Error(`lease ${id} does not exist (expired or revoked)`), { name: 'MetaError', code: 'noLease' });
    this.deadlines.set(id, this.o.clock.now() + lease.ttlMs);
    return lease.ttlMs;
  }

  close(): void {
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    this.timer = this.o.clock.setTimeout(() => {
      this.check();
      this.schedule();
    }, this.o.checkEveryMs ?? 100);
  }

  private check(): void {
    const leader = this.o.isLeader();
    if (!leader) {
      this.wasLeader = false;
      this.deadlines.clear();
      return;
    }
    const now = this.o.clock.now();
    if (!this.wasLeader) {
      this.wasLeader = true;
      this.deadlines.clear();
    }
    const live = new Set<number>();
    for (const lease of this.o.sm.leases()) {
      live.add(lease.id);
      const deadline = this.deadlines.get(lease.id);
      if (deadline === undefined) this.deadlines.set(lease.id, now + lease.ttlMs);
      else if (now > deadline && !this.revoking.has(lease.id)) this.expire(lease.id);
    }
    for (const id of this.deadlines.keys()) if (!live.has(id)) this.deadlines.delete(id);
  }

  private expire(id: number): void {
    this.revoking.add(id);
    this.o.logger.info({ lease: id }, 'lease expired; revoking');
    this.o.revoke(id).then(
      () => this.revoking.delete(id),
      (err) => {
        this.revoking.delete(id);
        this.o.logger.warn({ lease: id, err: (err as Error).message }, 'lease revoke failed; will retry');
      },
    );
  }
}
