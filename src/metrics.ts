/** Named counters with labels, cheap enough for the hot path; rendered for /metrics later. */
/** `name{k="v",...}`: built by concatenation (this runs for every request on the hot path). */
function seriesKey(name: string, labels?: Record<string, string>): string {
  if (!labels) return name;
  let key = name + '{';
  let sep = '';
  for (const k in labels) {
    key += sep + k + '="' + labels[k] + '"';
    sep = ',';
  }
  return key + '}';
}

export class Counters {
  private readonly values = new Map<string, number>();

  inc(name: string, labels?: Record<string, string>, by = 1): void {
    const key = seriesKey(name, labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  get(name: string, labels?: Record<string, string>): number {
    return this.values.get(seriesKey(name, labels)) ?? 0;
  }

  /** Sum over every label combination of `name`. */
  total(name: string): number {
    let n = 0;
    for (const [k, v] of this.values) if (k === name || k.startsWith(name + '{')) n += v;
    return n;
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.values].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
}

/** Logs at most once per `everyMs` per key, counting what it suppressed. */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  constructor(private readonly everyMs = 5000, private readonly now: () => number = () => performance.now()) {}

  /** Returns the number suppressed since the last emit when it is time to log, else -1. */
  check(key: string): number {
    const t = this.now();
    const s = this.last.get(key);
    if (!s || t - s.at >= this.everyMs) {
      this.last.set(key, { at: t, suppressed: 0 });
      return s?.suppressed ?? 0;
    }
    s.suppressed++;
    return -1;
  }
}

/** A Prometheus-style histogram (cumulative buckets in the rendering), e.g. fsync latency in ms. */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    const i = this.bounds.findIndex((b) => v <= b);
    if (i >= 0) this.counts[i]!++;
  }

  toJSON(): { bounds: readonly number[]; counts: number[]; sum: number; count: number } {
    return { bounds: this.bounds, counts: [...this.counts], sum: this.sum, count: this.count };
  }

  /** Prometheus text lines for `name` (le in the histogram's own unit), with extra labels. */
  render(name: string, labels = ''): string[] {
    const sep = labels ? `${labels},` : '';
    const out: string[] = [];
    let cumulative = 0;
    this.bounds.forEach((b, i) => {
      cumulative += this.counts[i]!;
      out.push(`${name}_bucket{${sep}le="${b}"} ${cumulative}`);
    });
    out.push(`${name}_bucket{${sep}le="+Inf"} ${this.count}`, `${name}_sum${labels ? `{${labels}}` : ''} ${this.sum}`, `${name}_count${labels ? `{${labels}}` : ''} ${this.count}`);
    return out;
  }
}

export const FSYNC_MS_BUCKETS = [0.5, 1, 2, 5, 10, 20, 50, 100, 250, 1000] as const;
export const GC_MS_BUCKETS = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100] as const;
