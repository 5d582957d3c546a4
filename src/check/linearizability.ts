/**
 * Linearizability checker for a map of independent registers (one per key).
 *
 * Keys are independent objects, so the history is split per key (P-compositionality) and
 * each key is searched with Wing–Gong/Lowe just-in-time linearization: walk the events in
 * time order, linearize a pending call whenever the model accepts it, backtrack when a
 * return is reached for an op not yet linearized, and memoize (linearized set, state)
 * configurations so each is explored once.
 */

export type RegisterOp =
  | { type: 'put'; value: string }
  | { type: 'get' }
  | { type: 'delete' }
  | { type: 'cas'; expected: string | null; value: string }
  | { type: 'append'; value: string };

/**
 * Observed result: get → value (null = absent); cas → true if it swapped; append → the
 * new string. put/delete results are ignored. undefined = not observed (unconstrained).
 */
export type RegisterResult = string | null | boolean | undefined;

export interface HistoryOp {
  id: number | string;
  client: string;
  key: string;
  op: RegisterOp;
  invokeAt: number;
  /** null for ops that never completed (status 'info'). */
  completeAt: number | null;
  result?: RegisterResult;
  /** ok: took effect within [invokeAt, completeAt] with `result`; fail: never took effect;
   *  info: unknown — may take effect at any time after invokeAt, or never. */
  status: 'ok' | 'fail' | 'info';
}

export interface CheckOptions {
  /** Search steps across all keys before giving up with ok: 'unknown'. Default 5,000,000. */
  maxSteps?: number;
  /** Wall-clock budget in ms (non-deterministic, so off by default). */
  timeoutMs?: number;
  /** Max ops in a failure window. Default 12. */
  windowSize?: number;
}

export type CheckResult =
  | { ok: true; keysChecked: number; opsChecked: number }
  | { ok: false; key: string; reason: string; window: HistoryOp[] }
  | { ok: 'unknown'; key: string; reason: string; keysChecked: number; opsChecked: number };

type State = string | null;

/** Model transition; undefined = this op with this result is impossible in this state. */
function step(state: State, op: RegisterOp, result: RegisterResult): { next: State } | undefined {
  switch (op.type) {
    case 'put':
      return { next: op.value };
    case 'delete':
      return { next: null };
    case 'get':
      return result === undefined || result === state ? { next: state } : undefined;
    case 'cas': {
      const hit = state === op.expected;
      if (result !== undefined && result !== hit) return undefined;
      return { next: hit ? op.value : state };
    }
    case 'append': {
      const next = (state ?? '') + op.value;
      return result === undefined || result === next ? { next } : undefined;
    }
  }
}

interface Budget {
  stepsLeft: number;
  deadline: number;
}

type KeyOutcome =
  | { ok: true }
  | { ok: false; reason: string; window: HistoryOp[] }
  | { ok: 'unknown' };

export function checkLinearizability(history: readonly HistoryOp[], opts: CheckOptions = {}): CheckResult {
  const byKey = new Map<string, HistoryOp[]>();
  for (const h of history) {
    if (h.status === 'ok' && (h.completeAt === null || h.completeAt < h.invokeAt)) {
      throw new TypeError(`op ${String(h.id)}: ok ops need completeAt >= invokeAt`);
    }
    // fail ops never happened; an info read has no observed result, so it constrains nothing.
    if (h.status === 'fail' || (h.status === 'info' && h.op.type === 'get')) continue;
    let list = byKey.get(h.key);
    if (!list) byKey.set(h.key, (list = []));
    list.push(h);
  }
  const budget: Budget = {
    stepsLeft: opts.maxSteps ?? 5_000_000,
    deadline: opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs,
  };
  let keysChecked = 0;
  let opsChecked = 0;
  let unknownKey: string | null = null;
  // Sorted so the reported failing key is deterministic.
  for (const key of [...byKey.keys()].sort()) {
    const ops = byKey.get(key)!;
    const out = checkKey(ops, budget, opts.windowSize ?? 12);
    if (out.ok === false) return { ok: false, key, reason: out.reason, window: out.window };
    if (out.ok === 'unknown') {
      unknownKey ??= key;
      continue; // a definite violation on another key is still worth finding
    }
    keysChecked++;
    opsChecked += ops.length;
  }
  if (unknownKey !== null) {
    return { ok: 'unknown', key: unknownKey, reason: 'search budget exhausted', keysChecked, opsChecked };
  }
  return { ok: true, keysChecked, opsChecked };
}

function checkKey(ops: HistoryOp[], budget: Budget, windowSize: number): KeyOutcome {
  const n = ops.length;
  // Event nodes: call of op i = 2i, return of op i = 2i+1, head sentinel = 2n.
  const order: number[] = [];
  for (let i = 0; i < 2 * n; i++) order.push(i);
  const timeOf = (e: number): number => {
    const h = ops[e >> 1];
    return e & 1 ? (h.status === 'info' ? Infinity : h.completeAt!) : h.invokeAt;
  };
  // Equal timestamps: calls before returns, i.e. touching intervals count as concurrent
  // (the permissive reading: no false alarms from coarse clocks).
  // (Infinity - Infinity is NaN, which is falsy, so two info returns fall through to the tie-breaks.)
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
  // Dancing links: removals undone in LIFO order restore the list exactly.
  const unlink = (x: number): void => {
    next[prev[x]] = next[x];
    if (next[x] !== -1) prev[next[x]] = prev[x];
  };
  const relink = (x: number): void => {
    next[prev[x]] = x;
    if (next[x] !== -1) prev[next[x]] = x;
  };

  // Interned model states make memo comparisons O(1) even when append builds long strings.
  const stateIds = new Map<State, number>([[null, 0]]);
  const states: State[] = [null];
  const intern = (s: State): number => {
    let id = stateIds.get(s);
    if (id === undefined) {
      id = states.length;
      stateIds.set(s, id);
      states.push(s);
    }
    return id;
  };

  const words = new Uint32Array((n + 31) >>> 5);
  // Memo of visited (linearized set, state): bucketed by an incrementally maintained
  // Zobrist hash of the set, compared exactly inside a bucket (no false "seen").
  const zobrist = new Int32Array(n);
  for (let i = 0; i < n; i++) zobrist[i] = fmix32(i + 1);
  let setHash = 0;
  const seen = new Map<number, { sid: number; bits: Uint32Array }[]>();
  /** Records the current configuration; false if it was already visited. */
  const visit = (sid: number): boolean => {
    const h = (setHash ^ fmix32(sid + 0x9e3779b9)) | 0;
    let bucket = seen.get(h);
    if (!bucket) seen.set(h, (bucket = []));
    outer: for (const c of bucket) {
      if (c.sid !== sid) continue;
      for (let w = 0; w < words.length; w++) if (c.bits[w] !== words[w]) continue outer;
      return false;
    }
    bucket.push({ sid, bits: words.slice() });
    return true;
  };
  const stackOp: number[] = [];
  const stackState: number[] = [];
  let state = 0;
  let linearizedRequired = 0;
  const required = ops.filter((h) => h.status === 'ok').length;

  // Deepest point reached (most required ops, then fewest optional info ops), for the report.
  let bestRequired = -1;
  let bestDepth = 0;
  let bestBlocked = -1;
  let bestPrefix: number[] = [];
  let bestState: State = null;

  let entry = next[HEAD];
  while (linearizedRequired < required) {
    if (--budget.stepsLeft < 0) return { ok: 'unknown' };
    if ((budget.stepsLeft & 4095) === 0 && Date.now() > budget.deadline) return { ok: 'unknown' };
    const i = entry >> 1;
    if ((entry & 1) === 0) {
      const h = ops[i];
      const t = step(states[state], h.op, h.status === 'info' ? undefined : h.result);
      if (t) {
        const sid = intern(t.next);
        words[i >>> 5] |= 1 << (i & 31);
        setHash ^= zobrist[i];
        if (visit(sid)) {
          stackOp.push(i);
          stackState.push(state);
          state = sid;
          if (h.status === 'ok') linearizedRequired++;
          unlink(2 * i);
          unlink(2 * i + 1);
          entry = next[HEAD];
          continue;
        }
        words[i >>> 5] &= ~(1 << (i & 31));
        setHash ^= zobrist[i];
      }
      entry = next[entry];
      continue;
    }
    // A return for an op not yet linearized (only required ops' returns precede the
    // infinite info returns, and we stop once all required ops are placed): backtrack.
    if (linearizedRequired > bestRequired || (linearizedRequired === bestRequired && stackOp.length < bestDepth)) {
      bestRequired = linearizedRequired;
      bestDepth = stackOp.length;
      bestBlocked = i;
      bestPrefix = stackOp.slice();
      bestState = states[state];
    }
    if (stackOp.length === 0) {
      return { ok: false, ...explain(ops, required, bestBlocked, bestPrefix, bestState, windowSize) };
    }
    const top = stackOp.pop()!;
    state = stackState.pop()!;
    words[top >>> 5] &= ~(1 << (top & 31));
    setHash ^= zobrist[top];
    if (ops[top].status === 'ok') linearizedRequired--;
    relink(2 * top + 1);
    relink(2 * top);
    entry = next[2 * top];
  }
  return { ok: true };
}

/** murmur3 finalizer: spreads op indexes into well-mixed 32-bit hash keys. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function describe(h: HistoryOp): string {
  const o = h.op;
  const args =
    o.type === 'cas' ? `${JSON.stringify(o.expected)}, ${JSON.stringify(o.value)}`
    : o.type === 'put' || o.type === 'append' ? JSON.stringify(o.value)
    : '';
  const res = h.status !== 'ok' ? ` [${h.status}]` : h.result === undefined ? '' : ` -> ${JSON.stringify(h.result)}`;
  return `${h.client} ${o.type}(${args})${res}`;
}

/** Window = tail of the longest linearizable prefix + the stuck op + ops concurrent with it. */
function explain(
  ops: HistoryOp[],
  required: number,
  blocked: number,
  prefix: number[],
  state: State,
  windowSize: number,
): { reason: string; window: HistoryOp[] } {
  const b = ops[blocked];
  const end = b.completeAt ?? Infinity;
  const picked = new Set<number>([blocked]);
  for (const i of prefix.slice(-3)) picked.add(i);
  const concurrent = ops
    .map((h, i) => ({ h, i }))
    .filter(({ h }) => h.invokeAt <= end && (h.completeAt ?? Infinity) >= b.invokeAt)
    .sort((x, y) => Math.abs(x.h.invokeAt - b.invokeAt) - Math.abs(y.h.invokeAt - b.invokeAt));
  for (const { i } of concurrent) {
    if (picked.size >= windowSize) break;
    picked.add(i);
  }
  const window = [...picked].map((i) => ops[i]).sort((x, y) => x.invokeAt - y.invokeAt);
  const reason =
    `op ${String(b.id)} (${describe(b)}) cannot be linearized: the longest linearizable prefix ` +
    `places ${prefix.filter((i) => ops[i].status === 'ok').length} of ${required} completed ops ` +
    `(+${prefix.filter((i) => ops[i].status === 'info').length} unknown-outcome) and leaves the register at ${JSON.stringify(state)}; ` +
    `no order of the concurrent ops explains it`;
  return { reason, window };
}
