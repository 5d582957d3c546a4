/**
 * Raft peer transport over NATS core subjects: publish to `<cluster>.raft.<peer>`, subscribe to our
 * own. NATS is a dumb pipe here: no request/reply, no JetStream; loss, duplication and reordering
 * are Raft's to tolerate. Everything received is decoded and validated; anything bad (oversized,
 * malformed, wrong cluster, unknown type, from a non-member, addressed to someone else) is dropped,
 * counted by reason and logged at a limited rate — the node keeps running.
 */
import type { NatsConnection, Subscription } from 'nats';
import { decodeRaftMessage, DecodeError, encodeRaftMessage } from '../src/codec.ts';
import type { RaftMessage } from '../src/raft/messages.ts';
import type { NodeId } from '../src/raft/types.ts';
import { Counters, RateLimitedLog } from '../src/metrics.ts';
import { subjects } from '../src/nats/subjects.ts';
import { silentLogger, type Logger, type Transport } from './ports.ts';

export interface NatsTransportOptions {
  nc: NatsConnection;
  cluster: string;
  self: NodeId;
  /** Whether `id` may talk Raft to us (configured peers and the current configuration). */
  isMember(id: NodeId): boolean;
  maxBytes?: number;
  counters?: Counters;
  logger?: Logger;
}

/** Fault injection for tests and the chaos suite: drop traffic to/from chosen peers. */
export interface TransportFaults {
  dropTo: Set<NodeId>;
  dropFrom: Set<NodeId>;
}

export class NatsTransport implements Transport {
  readonly counters: Counters;
  faults: TransportFaults = { dropTo: new Set(), dropFrom: new Set() };
  private sub: Subscription | null = null;
  /** When (local monotonic ms) each peer was last heard from: the leader's quorum check. */
  readonly lastHeard = new Map<NodeId, number>();
  private readonly logger: Logger;
  private readonly limiter = new RateLimitedLog();

  constructor(private readonly o: NatsTransportOptions) {
    this.counters = o.counters ?? new Counters();
    this.logger = o.logger ?? silentLogger;
  }

  send(msg: RaftMessage): void {
    if (this.faults.dropTo.has(msg.to)) return void this.counters.inc('raft_messages_dropped_total', { reason: 'fault' });
    try {
      this.o.nc.publish(subjects.raft(this.o.cluster, msg.to), encodeRaftMessage(this.o.cluster, msg));
      this.counters.inc('raft_messages_sent_total', { type: msg.type });
    } catch (err) {
      // A closed or draining connection, or a payload over the broker's limit: Raft retries.
      this.counters.inc('raft_messages_dropped_total', { reason: 'publish' });
      this.warn('publish', { err: (err as Error).message, to: msg.to, type: msg.type }, 'raft publish failed');
    }
  }

  listen(handler: (msg: RaftMessage) => void): void {
    if (this.sub) throw new Error('NatsTransport.listen called twice');
    this.sub = this.o.nc.subscribe(subjects.raft(this.o.cluster, this.o.self), {
      callback: (err, m) => {
        if (err) return this.warn('subscription', { err: err.message }, 'raft subscription error');
        const msg = this.accept(m.data);
        if (msg) handler(msg);
      },
    });
  }

  /** Decodes and checks one received payload; null (counted, logged) when it must be dropped. */
  accept(data: Uint8Array): RaftMessage | null {
    let msg: RaftMessage;
    try {
      msg = decodeRaftMessage(data, { cluster: this.o.cluster, maxBytes: this.o.maxBytes });
    } catch (err) {
      const reason = err instanceof DecodeError ? err.reason : 'malformed';
      return this.drop(reason, { err: (err as Error).message, bytes: data.length });
    }
    if (msg.to !== this.o.self) return this.drop('wrongRecipient', { to: msg.to, from: msg.from });
    if (!this.o.isMember(msg.from)) return this.drop('unknownMember', { from: msg.from, type: msg.type });
    if (this.faults.dropFrom.has(msg.from)) return this.drop('fault', {}, false);
    this.counters.inc('raft_messages_received_total', { type: msg.type });
    this.lastHeard.set(msg.from, performance.now());
    return msg;
  }

  close(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }

  private drop(reason: string, detail: object, log = true): null {
    this.counters.inc('raft_messages_dropped_total', { reason });
    if (log) this.warn(reason, { reason, ...detail }, 'dropped raft message');
    return null;
  }

  private warn(key: string, obj: object, msg: string): void {
    const suppressed = this.limiter.check(key);
    if (suppressed >= 0) this.logger.warn({ node: this.o.self, ...obj, ...(suppressed ? { suppressed } : {}) }, msg);
  }
}
