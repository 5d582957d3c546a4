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
/** Event-loop lag (ms): fine at the low end, where a healthy member lives, up to multi-second stalls. */
export const LOOP_LAG_MS_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500] as const;

/** What a member reports about its event-loop lag (status `loopLagMs`). */
export interface LoopLagJSON {
  /** Cumulative histogram of every sample since start (ms), like `gcMs`: subtract two to get a run. */
  bounds: readonly number[];
  counts: number[];
  sum: number;
  count: number;
  /** How often the loop is sampled (ms): a sample is how much later than this a timer fired. */
  resolutionMs: number;
  /** Exact percentiles over the samples of the last `seconds`. */
  window: { seconds: number; samples: number; p50: number; p99: number; max: number };
  /** The longest stall since start (ms) and when it ended (epoch ms; null before any sample). */
  longestStallMs: number;
  longestStallAt: number | null;
  /** The latest lags of at least `stallMs` (ms; newest last, at most `STALLS_KEPT`), ended at `at` (epoch ms). */
  stallMs: number;
  stalls: { at: number; ms: number }[];
}

const STALLS_KEPT = 20;

/**
 * Event-loop lag of this process by timer drift: an unref'd interval timer every `resolutionMs`
 * notes how much later than due it ran. Every request a member serves waits behind that lag
 * (GC pauses, a long apply or snapshot, a busy loop). Cost: one short callback per resolution.
 */
export class EventLoopLag {
  readonly histogram = new Histogram(LOOP_LAG_MS_BUCKETS);
  private timer: ReturnType<typeof setInterval> | null = null;
  private last = 0;
  /** The last window's samples (ms) and their times (performance.now ms), as a ring. */
  private readonly ring: Float64Array;
  private readonly ringAt: Float64Array;
  private written = 0;
  private longestMs = 0;
  private longestAt: number | null = null;
  private readonly stalls: { at: number; ms: number }[] = [];

  constructor(readonly resolutionMs = 10, readonly windowMs = 60_000, readonly stallMs = 100) {
    const size = Math.ceil(windowMs / resolutionMs) + 1;
    this.ring = new Float64Array(size);
    this.ringAt = new Float64Array(size);
  }

  start(): void {
    if (this.timer) return;
    this.last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      // libuv's clock has 1 ms steps: a timer can look up to ~1 ms early.
      this.observe(Math.max(0, now - this.last - this.resolutionMs), now);
      this.last = now;
    }, this.resolutionMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One lag sample (ms) that ended at `now` (performance.now ms). */
  observe(ms: number, now = performance.now()): void {
    this.histogram.observe(ms);
    const i = this.written++ % this.ring.length;
    this.ring[i] = ms;
    this.ringAt[i] = now;
    if (ms >= this.longestMs || this.longestAt === null) {
      this.longestMs = ms;
      this.longestAt = performance.timeOrigin + now;
    }
    if (ms >= this.stallMs) {
      this.stalls.push({ at: Math.round(performance.timeOrigin + now), ms: round2(ms) });
      if (this.stalls.length > STALLS_KEPT) this.stalls.shift();
    }
  }

  toJSON(now = performance.now()): LoopLagJSON {
    const n = Math.min(this.written, this.ring.length);
    const recent = new Float64Array(n);
    let k = 0;
    for (let i = 0; i < n; i++) if (now - this.ringAt[i]! <= this.windowMs) recent[k++] = this.ring[i]!;
    const w = recent.subarray(0, k).sort();
    const pct = (p: number) => (k ? round2(w[Math.min(k - 1, Math.floor(p * k))]!) : 0);
    return {
      ...this.histogram.toJSON(),
      resolutionMs: this.resolutionMs,
      window: { seconds: this.windowMs / 1000, samples: k, p50: pct(0.5), p99: pct(0.99), max: k ? round2(w[k - 1]!) : 0 },
      longestStallMs: round2(this.longestMs),
      longestStallAt: this.longestAt === null ? null : Math.round(this.longestAt),
      stallMs: this.stallMs,
      stalls: this.stalls.map((s) => ({ ...s })),
    };
  }
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}
