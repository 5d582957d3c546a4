/**
 * Serves watches on one member: every committed change under a prefix, in revision order, with
 * no silent gap. Each push carries `from` (the revision the watcher is known to have seen) and
 * `to`; a watcher that sees `from` differ from its own cursor knows a push was lost (NATS is at
 * most once) and re-subscribes from its cursor. Progress pushes with no events let a watcher
 * notice a dead member. A watch not renewed within its TTL is dropped (the client is gone).
 */
import type { NatsConnection } from 'nats';
import { encodeEnvelope } from '../src/codec.ts';
import { CompactedError } from '../src/errors.ts';
import { subjects } from '../src/nats/subjects.ts';
import type { MetadataStateMachine, WatchEvent } from '../src/sm/metadata.ts';
import type { Clock } from './ports.ts';

export interface WatchPush {
  watchId: string;
  from: number;
  to: number;
  events: WatchEvent[];
}

/** Well under the broker's 1 MB limit; a single revision larger than this is sent whole. */
export const MAX_PUSH_BYTES = 256 * 1024;

/** The index nearest the middle where the revision changes (0 when all events share one revision). */
export function revisionBoundary(events: WatchEvent[]): number {
  const mid = events.length >> 1;
  for (let d = 0; d < events.length; d++) {
    for (const i of [mid + d, mid - d]) {
      if (i > 0 && i < events.length && events[i - 1]!.revision !== events[i]!.revision) return i;
    }
  }
  return 0;
}

interface Watch {
  id: string;
  prefix: string;
  sentThrough: number;
  expiresAt: number;
  ttlMs: number;
}

export class WatchHub {
  private readonly watches = new Map<string, Watch>();
  private pending: WatchEvent[] = [];
  private flushQueued = false;
  private timer: unknown = null;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly o: { nc: NatsConnection; cluster: string; sm: MetadataStateMachine; clock: Clock; progressMs?: number; maxWatches?: number },
  ) {
    this.unsubscribe = o.sm.onChange((ev) => {
      if (this.watches.size === 0) return;
      this.pending.push(ev);
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(() => this.flush());
      }
    });
    this.tick();
  }

  get size(): number {
    return this.watches.size;
  }

  /** Starts (or restarts) a watch; throws CompactedError when `fromRevision` is too old. */
  open(req: { watchId: string; prefix: string; fromRevision: number; ttlMs: number }): { revision: number } {
    const { sm, clock } = this.o;
    if (!this.watches.has(req.watchId) && this.watches.size >= (this.o.maxWatches ?? 10_000)) {
      throw new Error(`too many watches on this member (${this.watches.size})`);
    }
    const past = sm.changesSince(req.fromRevision, req.prefix);
    if ('compacted' in past) throw new CompactedError(past.compactRevision);
    const w: Watch = { id: req.watchId, prefix: req.prefix, sentThrough: req.fromRevision, expiresAt: clock.now() + req.ttlMs, ttlMs: req.ttlMs };
    this.watches.set(w.id, w);
    // Events already queued for the next flush are included in `past`; the flush skips them by revision.
    // A member behind the watcher's cursor pushes nothing until it has caught up past it.
    if (sm.revision > req.fromRevision) this.push(w, past.events, sm.revision);
    return { revision: sm.revision };
  }

  renew(watchId: string): boolean {
    const w = this.watches.get(watchId);
    if (!w) return false;
    w.expiresAt = this.o.clock.now() + w.ttlMs;
    return true;
  }

  cancel(watchId: string): boolean {
    return this.watches.delete(watchId);
  }

  close(): void {
    this.unsubscribe();
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    this.watches.clear();
  }

  private flush(): void {
    this.flushQueued = false;
    const events = this.pending;
    this.pending = [];
    const to = this.o.sm.revision;
    for (const w of this.watches.values()) {
      const mine = events.filter((e) => e.revision > w.sentThrough && e.kv.key.startsWith(w.prefix));
      if (mine.length) this.push(w, mine, to);
    }
  }

  /**
   * Publishes events (from w.sentThrough to `to`) in pushes of at most MAX_PUSH_BYTES, split only
   * between revisions (a watcher skips what is at or below its cursor): a large backlog must not
   * exceed the broker's message limit, nor hold the connection long.
   */
  private push(w: Watch, events: WatchEvent[], to: number): void {
    const body: WatchPush = { watchId: w.id, from: w.sentThrough, to, events };
    const bytes = encodeEnvelope(this.o.cluster, 'watch', body);
    if (bytes.length > MAX_PUSH_BYTES && events.length > 1) {
      const cut = revisionBoundary(events);
      if (cut > 0) {
        this.push(w, events.slice(0, cut), events[cut - 1]!.revision);
        this.push(w, events.slice(cut), to);
        return;
      }
    }
    w.sentThrough = to;
    try {
      this.o.nc.publish(subjects.watch(this.o.cluster, w.id), bytes);
    } catch {
      // The watcher sees the gap at the next push and re-subscribes from its cursor.
    }
  }

  private tick(): void {
    const every = this.o.progressMs ?? 1000;
    this.timer = this.o.clock.setTimeout(() => {
      const now = this.o.clock.now();
      for (const w of [...this.watches.values()]) {
        if (now > w.expiresAt) this.watches.delete(w.id);
        else this.push(w, [], Math.max(w.sentThrough, this.o.sm.revision));
      }
      this.tick();
    }, every);
  }
}
