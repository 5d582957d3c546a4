import type { Clock } from './ports.ts';

/**
 * Jittered exponential backoff: the wait before attempt n is drawn from [minMs, ceiling], the
 * ceiling doubling from minMs per attempt up to maxMs (full jitter above the floor).
 */
export function jitteredBackoff(o: { minMs: number; maxMs: number }, random: () => number): (attempt: number) => number {
  const { minMs, maxMs } = o;
  return (attempt) => {
    const ceiling = Math.max(minMs, Math.min(maxMs, minMs * 2 ** (attempt - 1)));
    return Math.round(minMs + random() * (ceiling - minMs));
  };
}

/**
 * The one retry timer behind a machine's `scheduleRetry` / `cancelRetry` actions: at most one armed,
 * `due` called when it fires. Time comes from the injected clock.
 */
export class RetryTimer {
  private handle: unknown = null;

  constructor(private readonly clock: Clock, private readonly due: () => void) {}

  schedule(ms: number): void {
    this.cancel();
    this.handle = this.clock.setTimeout(() => {
      this.handle = null;
      this.due();
    }, ms);
  }

  cancel(): void {
    if (this.handle !== null) this.clock.clearTimeout(this.handle);
    this.handle = null;
  }
}
