import { decodeRaftMessage, encodeRaftMessage } from '../codec.ts';
import type { RaftMessage } from '../raft/messages.ts';
import type { Transport } from '../../actors/ports.ts';
import type { Rng } from './rng.ts';
import type { Scheduler } from './scheduler.ts';

export interface NetworkFaults {
  dropRate: number;
  duplicateRate: number;
  minDelayMs: number;
  maxDelayMs: number;
}

export const calmNetwork: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelayMs: 0.2, maxDelayMs: 2 };

/**
 * An in-memory network that carries every message through the real codec. Random delays
 * reorder messages; links can be cut one way (from→to) or both ways.
 */
export class SimNetwork {
  faults: NetworkFaults = { ...calmNetwork };
  private handlers = new Map<string, (m: RaftMessage) => void>();
  private cut = new Set<string>();
  sent = 0;
  delivered = 0;
  dropped = 0;
  onDeliver: ((m: RaftMessage) => void) | null = null;

  constructor(private readonly sched: Scheduler, private readonly rng: Rng, private readonly cluster = 'sim') {}

  transport(id: string): Transport {
    return {
      send: (m) => this.send(m),
      listen: (h) => void this.handlers.set(id, h),
      close: () => void this.handlers.delete(id),
    };
  }

  cutLink(from: string, to: string): void {
    this.cut.add(`${from}>${to}`);
  }

  partition(a: readonly string[], b: readonly string[]): void {
    for (const x of a) for (const y of b) {
      this.cutLink(x, y);
      this.cutLink(y, x);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  isCut(from: string, to: string): boolean {
    return this.cut.has(`${from}>${to}`);
  }

  private send(m: RaftMessage): void {
    this.sent++;
    const bytes = encodeRaftMessage(this.cluster, m);
    const f = this.faults;
    const copies = this.rng.chance(f.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      if (this.rng.chance(f.dropRate)) {
        this.dropped++;
        continue;
      }
      const delay = f.minDelayMs + this.rng() * (f.maxDelayMs - f.minDelayMs);
      this.sched.after(delay, () => {
        // Partitions are checked at delivery: a message in flight when the link is cut is lost.
        if (this.isCut(m.from, m.to)) return void this.dropped++;
        const h = this.handlers.get(m.to);
        if (!h) return void this.dropped++;
        const decoded = decodeRaftMessage(bytes, { cluster: this.cluster });
        this.delivered++;
        this.onDeliver?.(decoded);
        h(decoded);
      });
    }
  }
}
