import type { Clock } from '../../actors/ports.ts';

interface Task {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * Virtual time for the simulator: a min-heap of tasks ordered by (time, insertion order), so
 * equal deadlines run in a fixed order. Between tasks the caller drains microtasks, which lets
 * the node actors' promise chains (simulated disk, persist, apply) run to completion.
 */
export class Scheduler {
  now = 0;
  private heap: Task[] = [];
  private seq = 0;
  executed = 0;

  at(time: number, fn: () => void): Task {
    const t: Task = { at: Math.max(time, this.now), seq: this.seq++, fn, cancelled: false };
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
    return t;
  }

  after(delay: number, fn: () => void): Task {
    return this.at(this.now + delay, fn);
  }

  /** Pop and run the next task; false when none is left or the next is after `until`. */
  step(until: number): boolean {
    const h = this.heap;
    while (h.length && h[0]!.cancelled) this.pop();
    if (!h.length || h[0]!.at > until) return false;
    const t = this.pop();
    this.now = t.at;
    this.executed++;
    t.fn();
    return true;
  }

  get pending(): number {
    return this.heap.length;
  }

  private pop(): Task {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

const less = (a: Task, b: Task): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq);

/**
 * One node's view of time: its monotonic clock may run fast (rate > 1) or jump forward.
 * Timer durations are measured on the node's clock, so a fast clock fires them early.
 */
export class NodeClock implements Clock {
  rate = 1;
  offset = 0;
  private base = 0;
  private baseLocal = 0;
  constructor(private readonly sched: Scheduler) {}

  now(): number {
    return this.baseLocal + (this.sched.now - this.base) * this.rate + this.offset;
  }

  setRate(rate: number): void {
    this.baseLocal = this.now() - this.offset;
    this.base = this.sched.now;
    this.rate = rate;
  }

  jump(ms: number): void {
    this.offset += ms;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    return this.sched.after(ms / this.rate, fn);
  }

  clearTimeout(handle: unknown): void {
    (handle as Task).cancelled = true;
  }

  yield(): Promise<void> {
    return new Promise((resolve) => this.sched.after(0, resolve));
  }
}
