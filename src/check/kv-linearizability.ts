/**
 * Linearizability checker for the metadata center's key/value operations as the chaos suite uses
 * them: put, get, compare-and-set and incr, one register or counter per key.
 *
 * Same search as src/check/linearizability.ts (per-key Wing–Gong/Lowe just-in-time linearization
 * with a memo of (linearized set, state)), extended in two ways that the chaos histories need:
 *
 * - the model has numeric state and `incr` (a counter key starts absent, read as null, and an
 *   incr on it gives `by`); an incr whose outcome is unknown cannot be written as put/cas of a
 *   known value, so the register-only checker cannot express it;
 * - unknown-outcome ops are only placed where they change the state (placing one as a no-op
 *   consumes it and keeps nothing open that leaving it out would not);
 * - symmetry reduction for outcome-unknown (`info`) ops: info ops with the same `symmetry` class
 *   (e.g. every unknown `incr(1)` of a key, or every unknown put of a value nobody ever observed)
 *   are interchangeable, so only the earliest-invoked not-yet-linearized one of a class may be
 *   linearized next. Any linearization can be rewritten into that canonical form (if j is placed
 *   at point p while an earlier-invoked i of the same class is placed later or never, swap them:
 *   i was already invoked at p), so nothing is lost, and k such ops cost k+1 configurations
 *   instead of 2^k.
 */

export type KvOp =
  | { type: 'put'; value: string }
  | { type: 'get' }
  /** Succeeds iff the key holds `expected` (null = absent); then holds `value`. */
  | { type: 'cas'; expected: string | number | null; value: string }
  | { type: 'incr'; by: number };

export type KvState = string | number | null;

/** get → the value read (null = absent); cas → true if it swapped; incr → the new value; put → ignored. */
export type KvResult = KvState | boolean | undefined;

export interface KvHistoryOp {
  id: number | string;
  client: string;
  key: string;
  op: KvOp;
  invokeAt: number;
  /** null for ops that never completed with a known outcome (status 'info'). */
  completeAt: number | null;
  result?: KvResult;
  /** ok: took effect within [invokeAt, completeAt] with `result`; fail: never took effect;
   *  info: unknown — may take effect at any one time after invokeAt, or never. */
  status: 'ok' | 'fail' | 'info';
  /** Info ops with equal non-empty `symmetry` must be interchangeable (same op, no result). */
  symmetry?: string;
}

export interface KvCheckOptions {
  /** Search steps per key before giving up on that key with 'unknown'. Default 100,000,000. */
  maxStepsPerKey?: number;
  /** Max ops in the reported window around the stuck op. Default 12. */
  windowSize?: number;
}

export type KvKeyOutcome =
  | { ok: true; ops: number; steps: number }
  | { ok: false; ops: number; steps: number; blocked: KvHistoryOp; reason: string; window: KvHistoryOp[] }
  | { ok: 'unknown'; ops: number; steps: number };

/** Model transition; undefined = this op with this result is impossible in this state. */
export function kvStep(state: KvState, op: KvOp, result: KvResult): { next: KvState } | undefined {
  switch (op.type) {
    case 'put':
      return { next: op.value };
    case 'get':
      return result === undefined || result === state ? { next: state } : undefined;
    case 'cas': {
      const hit = state === op.expected;
      if (result !== undefined && result !== hit) return undefined;
      return { next: hit ? op.value : state };
    }
    case 'incr': {
      if (state !== null && typeof state !== 'number') return undefined; // the member refuses it: no effect, but then it is not ok
      const next = (state ?? 0) + op.by;
      return result === undefined || result === next ? { next } : undefined;
    }
  }
}

/** Splits by key and checks each; keys in sorted order. */
export function checkKvHistory(history: readonly KvHistoryOp[], opts: KvCheckOptions = {}): Map<string, KvKeyOutcome> {
  const byKey = new Map<string, KvHistoryOp[]>();
  for (const h of history) {
    if (h.status === 'ok' && (h.completeAt === null || h.completeAt < h.invokeAt)) {
      throw new TypeError(`op ${String(h.id)}: ok ops need completeAt >= invokeAt`);
    }
    let list = byKey.get(h.key);
    if (!list) byKey.set(h.key, (list = []));
    list.push(h);
  }
  const out = new Map<string, KvKeyOutcome>();
  for (const key of [...byKey.keys()].sort()) out.set(key, checkKvKey(byKey.get(key)!, opts));
  return out;
}

/** Checks one key's ops (all must be of one key). fail ops and info gets are left out. */
export function checkKvKey(all: readonly KvHistoryOp[], opts: KvCheckOptions = {}): KvKeyOutcome {
  const ops = all.filter((h) => !(h.status === 'fail' || (h.status === 'info' && h.op.type === 'get')));
  return search(ops, opts);
}

function search(ops: KvHistoryOp[], opts: KvCheckOptions): KvKeyOutcome {
  const n = ops.length;
  const maxSteps = opts.maxStepsPerKey ?? 100_000_000;
  const windowSize = opts.windowSize ?? 12;
  // Event nodes: call of op i = 2i, return of op i = 2i+1, head sentinel = 2n.
  const order: number[] = [];
  for (let i = 0; i < 2 * n; i++) order.push(i);
  const timeOf = (e: number): number => {
    const h = ops[e >> 1]!;
    return e & 1 ? (h.status === 'info' ? Infinity : h.completeAt!) : h.invokeAt;
  };
  // Equal timestamps: calls before returns (touching intervals are concurrent). Infinity - Infinity
  // is NaN (falsy), so two info returns fall through to the tie-breaks.
  order.sort((a, b) => timeOf(a) - timeOf(b) || (a & 1) - (b & 1) || a - b);
  const HEAD = 2 * n;
  const next = new Int32Array(2 * n + 1).fill(-1);
  const prev = new Int32Array(2 * n + 1).fill(-1);
  let last = HEAD;
  for (const e of order) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  const unlink = (x: number): void => {
    next[prev[x]!] = next[x]!;
    if (next[x] !== -1) prev[next[x]!] = prev[x]!;
  };
  const relink = (x: number): void => {
    next[prev[x]!] = x;
    if (next[x] !== -1) prev[next[x]!] = x;
  };

  // Symmetry classes of info ops: members in invocation order; count linearized per class.
  const classOf = new Int32Array(n).fill(-1);
  const rankInClass = new Int32Array(n);
  const classIds = new Map<string, number>();
  const classMembers: number[][] = [];
  for (let i = 0; i < n; i++) {
    const h = ops[i]!;
    if (h.status !== 'info' || !h.symmetry) continue;
    let c = classIds.get(h.symmetry);
    if (c === undefined) {
      c = classMembers.length;
      classIds.set(h.symmetry, c);
      classMembers.push([]);
    }
    classOf[i] = c;
    classMembers[c]!.push(i);
  }
  for (const members of classMembers) {
    members.sort((a, b) => ops[a]!.invokeAt - ops[b]!.invokeAt || a - b);
    members.forEach((i, r) => (rankInClass[i] = r));
  }
  const classDone = new Int32Array(classMembers.length);

  const stateIds = new Map<KvState, number>([[null, 0]]);
  const states: KvState[] = [null];
  const intern = (s: KvState): number => {
    let id = stateIds.get(s);
    if (id === undefined) {
      id = states.length;
      stateIds.set(s, id);
      states.push(s);
    }
    return id;
  };

  // The memo of visited (linearized set, state) configurations, kept compact: long histories have
  // tens of thousands of ops per key, and a full bitset per configuration would cost gigabytes.
  // Completed ops are ranked by invocation; every one below `low` is linearized (a completed op
  // must be before the search passes its return), so the set is (low, the bits from low up to the
  // highest linearized rank, the sorted list of linearized unknown-outcome ops). Equal sets have
  // equal representations, so the comparison stays exact (no false "seen").
  const okRank = new Int32Array(n).fill(-1);
  {
    const okOps = [];
    for (let i = 0; i < n; i++) if (ops[i]!.status === 'ok') okOps.push(i);
    okOps.sort((a, b) => ops[a]!.invokeAt - ops[b]!.invokeAt || a - b);
    okOps.forEach((i, r) => (okRank[i] = r));
  }
  const okBits = new Uint32Array((n + 31) >>> 5);
  let low = 0; // every ok rank below is linearized
  let high = 0; // every ok rank at or above is not
  const infoDone: number[] = []; // linearized info ops, in push order (undone LIFO)
  const stackLow: number[] = [];
  const stackHigh: number[] = [];
  const zobrist = new Int32Array(n);
  for (let i = 0; i < n; i++) zobrist[i] = fmix32(i + 1);
  let setHash = 0;
  interface Config { sid: number; low: number; bits: Uint32Array; info: Int32Array }
  const seen = new Map<number, Config[]>();
  const apply = (i: number): void => {
    stackLow.push(low);
    stackHigh.push(high);
    setHash ^= zobrist[i]!;
    const r = okRank[i]!;
    if (r < 0) {
      infoDone.push(i);
      return;
    }
    okBits[r >>> 5]! |= 1 << (r & 31);
    if (r + 1 > high) high = r + 1;
    while (low < high && okBits[low >>> 5]! & (1 << (low & 31))) low++;
  };
  const undo = (i: number): void => {
    low = stackLow.pop()!;
    high = stackHigh.pop()!;
    setHash ^= zobrist[i]!;
    const r = okRank[i]!;
    if (r < 0) infoDone.pop();
    else okBits[r >>> 5]! &= ~(1 << (r & 31));
  };
  /** Records the current configuration; false if it was already visited. */
  const visit = (sid: number): boolean => {
    const h = (setHash ^ fmix32(sid + 0x9e3779b9)) | 0;
    const from = low >>> 5;
    const to = high > low ? ((high - 1) >>> 5) + 1 : from;
    let bucket = seen.get(h);
    if (!bucket) seen.set(h, (bucket = []));
    let info: Int32Array | null = null;
    outer: for (const c of bucket) {
      if (c.sid !== sid || c.low !== low || c.bits.length !== to - from || c.info.length !== infoDone.length) continue;
      for (let w = 0; w < c.bits.length; w++) if (c.bits[w] !== okBits[from + w]) continue outer;
      info ??= Int32Array.from(infoDone).sort();
      for (let k = 0; k < info.length; k++) if (c.info[k] !== info[k]) continue outer;
      return false;
    }
    bucket.push({ sid, low, bits: okBits.slice(from, to), info: info ?? Int32Array.from(infoDone).sort() });
    return true;
  };
  const stackOp: number[] = [];
  const stackState: number[] = [];
  let state = 0;
  let linearizedRequired = 0;
  const required = ops.filter((h) => h.status === 'ok').length;

  let bestRequired = -1;
  let bestDepth = 0;
  let bestBlocked = -1;
  let bestTail: number[] = [];
  let bestInfo = 0;
  let bestState: KvState = null;

  let steps = 0;
  let entry = next[HEAD]!;
  while (linearizedRequired < required) {
    if (++steps > maxSteps) return { ok: 'unknown', ops: n, steps };
    const i = entry >> 1;
    if ((entry & 1) === 0) {
      const h = ops[i]!;
      const c = classOf[i]!;
      if (c < 0 || rankInClass[i] === classDone[c]) {
        const t = kvStep(states[state]!, h.op, h.status === 'info' ? undefined : h.result);
        // An unknown-outcome op that would change nothing here (a cas that misses, a put of the
        // value already there) is never worth placing: leaving it out keeps every option open.
        if (t && !(h.status === 'info' && stateIds.get(t.next) === state)) {
          const sid = intern(t.next);
          apply(i);
          if (visit(sid)) {
            stackOp.push(i);
            stackState.push(state);
            state = sid;
            if (h.status === 'ok') linearizedRequired++;
            if (c >= 0) classDone[c]!++;
            unlink(2 * i);
            unlink(2 * i + 1);
            entry = next[HEAD]!;
            continue;
          }
          undo(i);
        }
      }
      entry = next[entry]!;
      continue;
    }
    // A return of an op not yet linearized: backtrack.
    if (linearizedRequired > bestRequired || (linearizedRequired === bestRequired && stackOp.length < bestDepth)) {
      bestRequired = linearizedRequired;
      bestDepth = stackOp.length;
      bestBlocked = i;
      // Only the tail and the counts: copying the whole stack each time would be quadratic.
      bestTail = stackOp.slice(-3);
      bestInfo = stackOp.length - linearizedRequired;
      bestState = states[state]!;
    }
    if (stackOp.length === 0) {
      return { ok: false, ops: n, steps, ...explain(ops, required, bestBlocked, bestTail, bestRequired, bestInfo, bestState, windowSize) };
    }
    const top = stackOp.pop()!;
    state = stackState.pop()!;
    undo(top);
    if (ops[top]!.status === 'ok') linearizedRequired--;
    if (classOf[top]! >= 0) classDone[classOf[top]!]!--;
    relink(2 * top + 1);
    relink(2 * top);
    entry = next[2 * top]!;
  }
  return { ok: true, ops: n, steps };
}

function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

export function describeKvOp(h: KvHistoryOp): string {
  const o = h.op;
  const args =
    o.type === 'cas' ? `${JSON.stringify(o.expected)} -> ${JSON.stringify(o.value)}`
    : o.type === 'put' ? JSON.stringify(o.value)
    : o.type === 'incr' ? String(o.by)
    : '';
  const res = h.status !== 'ok' ? ` [${h.status}]` : h.result === undefined ? '' : ` => ${JSON.stringify(h.result)}`;
  return `${h.client} ${o.type}(${args})${res}`;
}

function explain(
  ops: KvHistoryOp[],
  required: number,
  blocked: number,
  tail: number[],
  placedOk: number,
  placedInfo: number,
  state: KvState,
  windowSize: number,
): { blocked: KvHistoryOp; reason: string; window: KvHistoryOp[] } {
  const b = ops[blocked]!;
  const end = b.completeAt ?? Infinity;
  const picked = new Set<number>([blocked]);
  for (const i of tail) picked.add(i);
  const concurrent = ops
    .map((h, i) => ({ h, i }))
    .filter(({ h }) => h.invokeAt <= end && (h.completeAt ?? Infinity) >= b.invokeAt)
    .sort((x, y) => Math.abs(x.h.invokeAt - b.invokeAt) - Math.abs(y.h.invokeAt - b.invokeAt));
  for (const { i } of concurrent) {
    if (picked.size >= windowSize) break;
    picked.add(i);
  }
  const window = [...picked].map((i) => ops[i]!).sort((x, y) => x.invokeAt - y.invokeAt);
  const reason =
    `op ${String(b.id)} (${describeKvOp(b)}) cannot be linearized: the longest linearizable prefix ` +
    `places ${placedOk} of ${required} completed ops ` +
    `(+${placedInfo} unknown-outcome) and leaves the key at ${JSON.stringify(state)}; ` +
    `no order of the concurrent ops explains it`;
  return { blocked: b, reason, window };
}
