/**
 * The metadata center's replicated state machine: a revisioned key/value store with leases,
 * compare-and-set, shallow-merge updates, atomic batches, exactly-once client sessions and an
 * in-memory watch history.
 *
 * apply() depends only on the entry bytes and the current state (no clock, no randomness, no IO),
 * so every replica reaches the same state, results, snapshot bytes and digest. Lease *expiry* is
 * deliberately not here: the leader times leases on its own clock and proposes leaseRevoke.
 *
 * A `reduce` command runs a named reducer (deterministic code every member registers identically,
 * see registerReducer) over a key's current value and stores its outcome, so a domain update
 * (e.g. a note edit) is decided in log order on every replica instead of read-modify-write races.
 *
 * The watch history is NOT in the snapshot, so snapshots do not grow with write volume. After
 * restore() the history is empty and changesSince(r) for any r below the restored revision answers
 * { compacted: true }: watchers re-list and resume from the listed revision.
 */
import { createHash } from 'node:crypto';
import { Packr } from 'msgpackr';
import BTreeModule from 'sorted-btree';
import { restoreNow, type StateMachine } from '../raft/state-machine.ts';
import { PieceReader, lengthPrefixed, snapshotBytes, type SnapshotData } from '../raft/snapshot-data.ts';
import type { Entry } from '../raft/types.ts';
import { concatBytes } from '../bytes.ts';

// sorted-btree is CommonJS with `exports.default`: Node's ESM loader hands back the exports object.
const BTree = ((BTreeModule as unknown as { default?: unknown }).default ?? BTreeModule) as typeof BTreeModule.default;
type BTree<K, V> = BTreeModule.default<K, V>;

/** Plain msgpack-able data: string | finite number | boolean | null | Uint8Array | arrays | plain objects. */
export type MetaValue = unknown;

/** version counts writes since creation (1 on create); lease 0 = none. */
export interface KeyValue { key: string; value: MetaValue; createRevision: number; modRevision: number; version: number; lease: number }

/**
 * `client` is a session id the cluster handed out (`openSession`). seq is strictly increasing per
 * session, from 1; a retry reuses the same seq. `ack` (optional) says every seq up to it has its
 * reply at the client, so results are kept only for seqs above it: a client may have many writes
 * in flight, arriving in any order. Without `ack` the client is taken to be sequential
 * (ack = seq - 1).
 */
export interface MetaSession { client: string; seq: number; ack?: number }

/**
 * A session's seqs in flight must lie within (ack, ack + MAX_SESSION_WINDOW]: the client waits
 * before going further, and the state machine refuses (does not apply) a seq beyond it. Results
 * are never forgotten before the client acknowledges them, so a retry always finds its result.
 */
export const MAX_SESSION_WINDOW = 1024;

export type MetaCommand = { session?: MetaSession } & (
  /** lease: absent keeps the key's current lease, 0 detaches, n attaches to lease n. */
  | { op: 'put'; key: string; value: MetaValue; lease?: number; expectedRevision?: number; merge?: boolean }
  | { op: 'delete'; key: string; expectedRevision?: number }
  | { op: 'deletePrefix'; prefix: string }
  | { op: 'incr'; key: string; by: number }
  | { op: 'leaseGrant'; ttlMs: number }
  | { op: 'leaseRevoke'; id: number }
  /** Stores registered reducer `reducer`'s outcome over the key's current value; keeps the key's lease. */
  | { op: 'reduce'; reducer: string; key: string; action: MetaValue; expectedRevision?: number }
  | { op: 'batch'; ops: MetaCommand[] }
  /** A new session (its id in the result's `session`); carries no session itself. */
  | { op: 'openSession' }
);

/**
 * rejected: a reducer refused the action (its own error message is passed on).
 * Every code means the command was not applied (casFailed: applied, and it changed nothing), with
 * two session codes where an EARLIER attempt of the same seq may have been applied:
 * sessionExpired (the session is unknown: never opened, or evicted as least recently used) and
 * sessionStale (the seq was acknowledged and its result forgotten: a late duplicate). A client
 * reports those as "outcome unknown" when it had sent the seq before. sessionWindow: seq beyond
 * ack + MAX_SESSION_WINDOW.
 */
export type MetaErrorCode =
  | 'casFailed' | 'tooLarge' | 'noLease' | 'badCommand' | 'notObject' | 'rejected'
  | 'sessionExpired' | 'sessionStale' | 'sessionWindow';

export type MetaResult =
  | { ok: true; revision: number; kv?: KeyValue | null; prev?: KeyValue | null; deleted?: number; leaseId?: number; results?: MetaResult[]; session?: string }
  | { ok: false; code: MetaErrorCode; message: string; revision: number };

/** A delete event's kv is a tombstone (value null, modRevision = the delete's revision); prev holds the deleted pair. */
export interface WatchEvent { revision: number; type: 'put' | 'delete'; kv: KeyValue; prev: KeyValue | null }

export interface MetadataOptions { maxValueBytes?: number; maxKeyBytes?: number; maxSessions?: number; historySize?: number }

/** What a reducer decides: the key's new value, its removal, or a refusal (state unchanged). */
export type ReducerOutcome = { value: MetaValue } | { delete: true } | { error: string };

/**
 * Must be a pure function of its arguments (no clock, randomness, IO or outside state) and must
 * not mutate them (`current` is frozen): every replica runs it and must reach the same outcome.
 * A throw is turned into a badCommand result with the state unchanged.
 */
export type Reducer = (current: MetaValue | undefined, action: MetaValue, ctx: { key: string }) => ReducerOutcome;

const reducers = new Map<string, Reducer>();

/** Reducers are code: every member must register the same set at startup, before applying entries. */
export function registerReducer(name: string, fn: Reducer): void {
  if (typeof name !== 'string' || name === '') throw new Error('reducer name must be a non-empty string');
  const known = reducers.get(name);
  if (known && known !== fn) throw new Error(`reducer "${name}" is already registered with another function`);
  reducers.set(name, fn);
}

export const DEFAULT_MAX_VALUE_BYTES = 512 * 1024;
export const DEFAULT_MAX_KEY_BYTES = 1024;
export const DEFAULT_MAX_SESSIONS = 10_000;
export const DEFAULT_HISTORY_SIZE = 10_000;
export const MAX_LEASE_TTL_MS = 24 * 60 * 60 * 1000;
/** Bounds recursion in validation/freezing so no replica can hit a stack limit another does not. */
export const MAX_VALUE_DEPTH = 64;

// useRecords: false keeps the encoding self-describing; copyBuffers so stored binary values never
// alias entry bytes the caller may reuse; int64AsType 'auto' turns safe 64-bit ints from other
// encoders into numbers (unsafe ones stay bigint and are rejected; 'auto' is documented, the typings lag).
const packr = new Packr({ useRecords: false, structuredClone: false, copyBuffers: true, int64AsType: 'auto' as 'number' });

export function encodeMetaCommand(cmd: MetaCommand): Uint8Array {
  return packr.pack(cmd);
}

/** Decodes and validates; returns a fresh command holding only the known fields. Throws Error('malformed command: ...'). */
export function decodeMetaCommand(bytes: Uint8Array): MetaCommand {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    throw new Error(`malformed command: undecodable bytes (${(err as Error).message})`);
  }
  return parseCommand(raw, '', false);
}

type Rec = Record<string, unknown>;

function isPlainObject(v: unknown): v is Rec {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

const isUint = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function valueProblem(v: unknown, depth: number): string | null {
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || v instanceof Uint8Array) return null;
  if (typeof v === 'number') return Number.isFinite(v) ? null : 'value numbers must be finite';
  if (depth >= MAX_VALUE_DEPTH) return `value is nested deeper than ${MAX_VALUE_DEPTH} levels`;
  const items = Array.isArray(v) ? v : isPlainObject(v) ? Object.values(v) : null;
  if (!items) {
    const kind = v === undefined ? 'undefined' : typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
    return `value contains unsupported ${kind}`;
  }
  for (const item of items) {
    const p = valueProblem(item, depth + 1);
    if (p) return p;
  }
  return null;
}

function parseCommand(raw: unknown, path: string, nested: boolean): MetaCommand {
  const bad = (problem: string): never => {
    throw new Error(`malformed command: ${path}${problem}`);
  };
  if (!isPlainObject(raw)) return bad('not an object');
  const c = raw;
  const key = (): string => (typeof c.key === 'string' && c.key !== '' ? c.key : bad('key must be a non-empty string'));
  // Absent optional fields stay absent (not undefined), so normalized commands compare and encode identically.
  const opt = (name: 'lease' | 'expectedRevision'): { [k: string]: number } =>
    c[name] === undefined ? {} : isUint(c[name]) ? { [name]: c[name] } : bad(`${name} must be a non-negative integer`);
  let cmd: MetaCommand;
  switch (c.op) {
    case 'put': {
      const problem = valueProblem(c.value, 0);
      if (problem) bad(problem);
      if (c.merge !== undefined && typeof c.merge !== 'boolean') bad('merge must be a boolean');
      cmd = { op: 'put', key: key(), value: c.value, ...opt('lease'), ...opt('expectedRevision'), ...(c.merge ? { merge: true } : {}) };
      break;
    }
    case 'delete':
      cmd = { op: 'delete', key: key(), ...opt('expectedRevision') };
      break;
    case 'reduce': {
      if (typeof c.reducer !== 'string' || c.reducer === '') bad('reducer must be a non-empty string');
      const problem = c.action === undefined ? 'is required' : valueProblem(c.action, 0);
      if (problem) bad(`action ${problem}`);
      cmd = { op: 'reduce', reducer: c.reducer as string, key: key(), action: c.action, ...opt('expectedRevision') };
      break;
    }
    case 'deletePrefix':
      cmd = { op: 'deletePrefix', prefix: typeof c.prefix === 'string' ? c.prefix : bad('prefix must be a string') };
      break;
    case 'incr':
      cmd = { op: 'incr', key: key(), by: Number.isSafeInteger(c.by) ? (c.by as number) : bad('by must be a safe integer') };
      break;
    case 'leaseGrant': {
      const ok = Number.isSafeInteger(c.ttlMs) && (c.ttlMs as number) > 0 && (c.ttlMs as number) <= MAX_LEASE_TTL_MS;
      cmd = { op: 'leaseGrant', ttlMs: ok ? (c.ttlMs as number) : bad(`ttlMs must be an integer in 1..${MAX_LEASE_TTL_MS}`) };
      break;
    }
    case 'leaseRevoke':
      cmd = { op: 'leaseRevoke', id: isUint(c.id) && c.id > 0 ? c.id : bad('id must be a positive integer') };
      break;
    case 'openSession':
      if (nested) bad('openSession cannot be batched');
      if (c.session !== undefined) bad('openSession carries no session');
      return { op: 'openSession' };
    case 'batch':
      if (nested) bad('batches cannot be nested');
      if (!Array.isArray(c.ops)) bad('ops must be an array');
      cmd = { op: 'batch', ops: (c.ops as unknown[]).map((op, i) => parseCommand(op, `${path}op ${i}: `, true)) };
      break;
    default:
      return bad(`unknown op ${JSON.stringify(c.op)}`);
  }
  if (c.session === undefined) return cmd;
  if (nested) bad('batch ops carry no session');
  const s = c.session;
  if (!isPlainObject(s) || typeof s.client !== 'string') return bad('session.client must be a string');
  if (!isUint(s.seq)) bad('session.seq must be a non-negative integer');
  if (s.ack !== undefined && (!isUint(s.ack) || (s.ack as number) >= (s.seq as number))) bad('session.ack must be a non-negative integer below seq');
  const session: MetaSession = { client: s.client, seq: s.seq as number };
  if (s.ack !== undefined) session.ack = s.ack as number;
  return { session, ...cmd };
}

/** Values are frozen when stored, so handing them out is safe. Typed arrays cannot be frozen: treat them as read-only. */
function deepFreeze<T>(v: T, depth = 0): T {
  if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v) || Object.isFrozen(v) || depth > MAX_VALUE_DEPTH + 8) return v;
  for (const item of Object.values(v)) deepFreeze(item, depth + 1);
  return Object.freeze(v);
}


/** A listener bug must neither abort an apply half-way nor change this replica's state; surface it like an uncaught event error. */
function notify(call: () => void): void {
  try {
    call();
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}

/** A distinct box per call, so subscribing the same function twice unsubscribes separately. */
function subscribe<A extends unknown[]>(set: Set<(...args: A) => void>, fn: (...args: A) => void): () => void {
  const box = (...args: A) => fn(...args);
  set.add(box);
  return () => void set.delete(box);
}

type Outcome =
  | { ok: true; kv?: KeyValue | null; prev?: KeyValue | null; deleted?: number; leaseId?: number; results?: Outcome[]; session?: string }
  | { ok: false; code: MetaErrorCode; message: string };

const fail = (code: MetaErrorCode, message: string): Outcome => ({ ok: false, code, message });

/** Result revision is the store revision after the whole entry, filled in once the entry commits or rolls back. */
function finish(o: Outcome, revision: number): MetaResult {
  if (!o.ok) return Object.freeze({ ok: false, code: o.code, message: o.message, revision });
  const { ok: _ok, results, ...rest } = o;
  const r: MetaResult = { ok: true, revision, ...rest };
  if (results) r.results = Object.freeze(results.map((x) => finish(x, revision))) as MetaResult[];
  return Object.freeze(r);
}

/** One entry's execution: mutations happen in place and are undone in reverse if any op fails. */
interface Txn { rev: number; undo: (() => void)[]; events: WatchEvent[]; changed: boolean; granted: boolean }

interface Lease { ttlMs: number; keys: Set<string> }

type KvTuple = [key: string, value: MetaValue, createRevision: number, modRevision: number, version: number, lease: number];
type SessionTuple = [client: string, ack: number, results: [seq: number, result: MetaResult][]];

/** Version 1 (older members): one msgpack map holding everything. Still restored. */
interface MetaSnapshotV1 {
  v: 1;
  revision: number;
  kvs: KvTuple[];
  leases: [id: number, ttlMs: number][];
  sessions: SessionTuple[];
}

/**
 * Version 2: length-prefixed records after a 4-byte magic: this header, then the sessions
 * (LRU-first) and the key-values (sorted) in batches, so encoding and restoring go a batch at a
 * time. The order is fixed, so every replica's bytes for the same state are the same.
 */
interface MetaSnapshotHeader {
  v: 2;
  revision: number;
  sessionsOpened: number;
  leases: [id: number, ttlMs: number][];
  sessionCount: number;
  kvCount: number;
}

const SNAPSHOT_MAGIC = new Uint8Array([0x53, 0x43, 0x4d, 0x02]); // "SCM" 2
/** Key-values per snapshot record: ~35 KB with 256-byte values; bounded work per step. */
const SNAPSHOT_KV_BATCH = 128;
const SNAPSHOT_SESSION_BATCH = 64;

interface SessionRecord {
  /** Every seq ≤ ack is acknowledged by the client: never applied again. */
  ack: number;
  results: Map<number, MetaResult>;
  /** Snapshot generation it was created in: a record from an older one may be in a snapshot being encoded, so it is copied before a change. */
  gen: number;
}

export class MetadataStateMachine implements StateMachine<MetaResult> {
  /** Sorted (listing pages without sorting everything) and cloned in O(1) for a snapshot (copy-on-write nodes). */
  private kvs: BTree<string, KeyValue> = new BTree<string, KeyValue>();
  private leaseTable = new Map<number, Lease>();
  /** Map iteration order = LRU order by log position: touching a client re-inserts it at the end. */
  private sessions = new Map<string, SessionRecord>();
  private sessionGen = 0;
  private sessionsOpened = 0;
  private rev = 0;
  private history: WatchEvent[] = [];
  private historyStart = 0;
  /** Highest revision whose events may be (partly) gone from the history. */
  private compactRev = 0;
  private readonly changeListeners = new Set<(ev: WatchEvent) => void>();
  private readonly appliedListeners = new Set<(index: number, result: MetaResult) => void>();
  private readonly maxValueBytes: number;
  private readonly maxKeyBytes: number;
  private readonly maxSessions: number;
  private readonly historySize: number;
  /**
   * Commands decoded here before they were proposed (the leader validates every client write), by
   * the bytes object the log entry holds: apply takes the result instead of decoding again. Used
   * once; decoding is a pure function of the bytes, so every replica still applies the same command.
   */
  private readonly decoded = new WeakMap<Uint8Array, MetaCommand>();

  constructor(opts: MetadataOptions = {}) {
    this.maxValueBytes = opts.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    this.maxKeyBytes = opts.maxKeyBytes ?? DEFAULT_MAX_KEY_BYTES;
    this.maxSessions = opts.maxSessions ?? DEFAULT_MAX_SESSIONS;
    this.historySize = opts.historySize ?? DEFAULT_HISTORY_SIZE;
  }

  get revision(): number {
    return this.rev;
  }

  /** decodeMetaCommand (throws the same errors), remembering the result for the apply of these bytes. */
  decodeForProposal(bytes: Uint8Array): MetaCommand {
    const cmd = decodeMetaCommand(bytes);
    this.decoded.set(bytes, cmd);
    return cmd;
  }

  apply(entry: Entry): MetaResult {
    const result = this.applyData(entry.data);
    for (const fn of [...this.appliedListeners]) notify(() => fn(entry.index, result));
    return result;
  }

  private applyData(data: Uint8Array | null): MetaResult {
    if (!data) return finish({ ok: true }, this.rev);
    let cmd = this.decoded.get(data);
    if (cmd) this.decoded.delete(data);
    else try {
      cmd = decodeMetaCommand(data);
    } catch (err) {
      // A bad command must not crash a replica; every replica returns the same error.
      return finish(fail('badCommand', (err as Error).message), this.rev);
    }
    const s = cmd.session;
    if (!s) return cmd.op === 'openSession' ? this.openSession() : this.run(cmd);
    const found = this.sessions.get(s.client);
    if (!found) {
      return finish(fail('sessionExpired', `session ${s.client} is unknown or expired (the cluster keeps the ${this.maxSessions} most recently used sessions); this attempt was not applied`), this.rev);
    }
    const known = found.results.get(s.seq);
    if (known) {
      this.touch(s.client, found);
      return known; // a retry of an already-applied command: do not apply twice
    }
    if (s.seq <= found.ack) {
      return finish(fail('sessionStale', `seq ${s.seq} of session ${s.client} was acknowledged (ack ${found.ack}): a late duplicate, not applied again`), this.rev);
    }
    const ack = Math.max(found.ack, s.ack ?? s.seq - 1);
    if (s.seq - ack > MAX_SESSION_WINDOW) {
      return finish(fail('sessionWindow', `seq ${s.seq} of session ${s.client} is more than ${MAX_SESSION_WINDOW} beyond its acknowledged seq ${ack}; not applied`), this.rev);
    }
    const rec = this.own(s.client, found);
    const result = this.run(cmd);
    rec.results.set(s.seq, result);
    if (ack > rec.ack) {
      rec.ack = ack;
      for (const seq of rec.results.keys()) if (seq <= ack) rec.results.delete(seq);
    }
    this.touch(s.client, rec);
    return result;
  }

  /** Session ids come from a counter in the state: a retried open makes another session, never revives an expired one. */
  private openSession(): MetaResult {
    const id = `s${++this.sessionsOpened}`;
    this.sessions.set(id, { ack: 0, results: new Map(), gen: this.sessionGen });
    this.evictSessions();
    return finish({ ok: true, session: id }, this.rev);
  }

  /** The record to change: a copy if a snapshot being encoded may hold this one. */
  private own(client: string, rec: SessionRecord): SessionRecord {
    if (rec.gen === this.sessionGen) return rec;
    const copy = { ack: rec.ack, results: new Map(rec.results), gen: this.sessionGen };
    this.sessions.set(client, copy);
    return copy;
  }

  private touch(client: string, rec: SessionRecord): void {
    this.sessions.delete(client);
    this.sessions.set(client, rec);
    this.evictSessions();
  }

  private evictSessions(): void {
    while (this.sessions.size > this.maxSessions) this.sessions.delete(this.sessions.keys().next().value as string);
  }

  private run(cmd: MetaCommand): MetaResult {
    const txn: Txn = { rev: this.rev + 1, undo: [], events: [], changed: false, granted: false };
    let out: Outcome;
    try {
      out = this.exec(txn, cmd);
    } catch (err) {
      // Only a bug gets here. It is deterministic, so rolling back keeps replicas in agreement.
      out = fail('badCommand', `internal error: ${(err as Error).message}`);
    }
    if (!out.ok) {
      for (let i = txn.undo.length - 1; i >= 0; i--) txn.undo[i]!();
      return finish(out, this.rev);
    }
    if (txn.changed) this.rev = txn.rev;
    const result = finish(out, this.rev);
    // Listeners run after the commit, so they observe the entry's final state.
    for (const ev of txn.events) this.record(ev);
    return result;
  }

  private exec(txn: Txn, cmd: MetaCommand): Outcome {
    switch (cmd.op) {
      case 'put':
        return this.put(txn, cmd);
      case 'delete': {
        const cur = this.kvs.get(cmd.key);
        const cas = this.checkRevision(cmd.key, cur, cmd.expectedRevision);
        return cas ?? this.removeIfThere(txn, cur);
      }
      case 'reduce':
        return this.reduce(txn, cmd);
      case 'deletePrefix': {
        const doomed = this.list(cmd.prefix);
        for (const kv of doomed) this.remove(txn, kv);
        return { ok: true, deleted: doomed.length };
      }
      case 'incr': {
        const cur = this.kvs.get(cmd.key);
        const tooLong = this.checkKey(cmd.key);
        if (tooLong) return tooLong;
        const base = cur ? cur.value : 0;
        if (typeof base !== 'number') return fail('badCommand', `cannot incr key "${cmd.key}": its value is not a number`);
        const next = base + cmd.by;
        if (Number.isInteger(base) ? !Number.isSafeInteger(next) : !Number.isFinite(next)) {
          return fail('badCommand', `incr of key "${cmd.key}" leaves the safe integer range`);
        }
        return this.store(txn, cmd.key, cur, next, cur?.lease ?? 0);
      }
      case 'leaseGrant': {
        // Lease ids are revision numbers, so a second grant in one entry would reuse the id.
        if (txn.granted) return fail('badCommand', 'at most one leaseGrant per batch');
        txn.granted = true;
        const id = txn.rev;
        this.leaseTable.set(id, { ttlMs: cmd.ttlMs, keys: new Set() });
        txn.undo.push(() => this.leaseTable.delete(id));
        txn.changed = true;
        return { ok: true, leaseId: id };
      }
      case 'leaseRevoke': {
        const lease = this.leaseTable.get(cmd.id);
        if (!lease) return fail('noLease', `lease ${cmd.id} does not exist`);
        const keys = [...lease.keys].sort();
        for (const key of keys) this.remove(txn, this.kvs.get(key)!);
        this.leaseTable.delete(cmd.id);
        txn.undo.push(() => this.leaseTable.set(cmd.id, lease));
        txn.changed = true;
        return { ok: true, deleted: keys.length, leaseId: cmd.id };
      }
      case 'openSession':
        return fail('badCommand', 'openSession cannot be batched'); // parseCommand refuses it already
      case 'batch': {
        const results: Outcome[] = [];
        for (const [i, op] of cmd.ops.entries()) {
          const r = this.exec(txn, op);
          if (!r.ok) return fail(r.code, `op ${i}: ${r.message}`);
          results.push(r);
        }
        return { ok: true, results };
      }
    }
  }

  private put(txn: Txn, cmd: Extract<MetaCommand, { op: 'put' }>): Outcome {
    const { key } = cmd;
    const cur = this.kvs.get(key);
    const early = this.checkKey(key) ?? this.checkRevision(key, cur, cmd.expectedRevision);
    if (early) return early;
    if (cmd.lease && !this.leaseTable.has(cmd.lease)) return fail('noLease', `lease ${cmd.lease} does not exist`);
    let value = cmd.value;
    if (cmd.merge) {
      // Partial update of typed metadata: top-level fields replace, the rest stay.
      if (!isPlainObject(value)) return fail('notObject', `merge value for key "${key}" must be a plain object`);
      if (cur && !isPlainObject(cur.value)) return fail('notObject', `cannot merge into key "${key}": its current value is not an object`);
      if (cur) value = { ...(cur.value as Rec), ...value };
    }
    const size = packr.pack(value).byteLength;
    if (size > this.maxValueBytes) {
      return fail('tooLarge', `value for key "${key}" is ${size} bytes, over the limit of ${this.maxValueBytes} bytes (maxValueBytes)`);
    }
    return this.store(txn, key, cur, value, cmd.lease ?? cur?.lease ?? 0);
  }

  private reduce(txn: Txn, cmd: Extract<MetaCommand, { op: 'reduce' }>): Outcome {
    const { key } = cmd;
    const cur = this.kvs.get(key);
    const early = this.checkKey(key) ?? this.checkRevision(key, cur, cmd.expectedRevision);
    if (early) return early;
    const fn = reducers.get(cmd.reducer);
    if (!fn) return fail('badCommand', `unknown reducer "${cmd.reducer}"`);
    const what = `reducer "${cmd.reducer}" on key "${key}"`;
    let out: unknown;
    try {
      out = fn(cur?.value, cmd.action, { key });
    } catch (err) {
      return fail('badCommand', `${what} threw: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!isPlainObject(out)) return fail('badCommand', `${what} returned no outcome object`);
    if ('error' in out) return typeof out.error === 'string' ? fail('rejected', out.error) : fail('badCommand', `${what} returned a non-string error`);
    if (out.delete === true) return this.removeIfThere(txn, cur);
    if (!('value' in out)) return fail('badCommand', `${what} returned neither value, delete nor error`);
    const problem = valueProblem(out.value, 0);
    if (problem) return fail('badCommand', `${what} returned a bad value: ${problem}`);
    const bytes = packr.pack(out.value);
    if (bytes.byteLength > this.maxValueBytes) {
      return fail('tooLarge', `value for key "${key}" is ${bytes.byteLength} bytes, over the limit of ${this.maxValueBytes} bytes (maxValueBytes)`);
    }
    // Stored in its decoded form, so this replica holds exactly what a snapshot restore would.
    return this.store(txn, key, cur, packr.unpack(bytes), cur?.lease ?? 0);
  }

  private removeIfThere(txn: Txn, cur: KeyValue | undefined): Outcome {
    if (!cur) return { ok: true, deleted: 0, prev: null };
    this.remove(txn, cur);
    return { ok: true, deleted: 1, prev: cur };
  }

  private checkKey(key: string): Outcome | null {
    const bytes = Buffer.byteLength(key, 'utf8');
    if (bytes <= this.maxKeyBytes) return null;
    return fail('tooLarge', `key is ${bytes} bytes, over the limit of ${this.maxKeyBytes} bytes (maxKeyBytes)`);
  }

  private checkRevision(key: string, cur: KeyValue | undefined, expected: number | undefined): Outcome | null {
    const actual = cur?.modRevision ?? 0;
    if (expected === undefined || expected === actual) return null;
    return fail('casFailed', `key "${key}": expected revision ${expected}, actual ${actual}${cur ? '' : ' (missing)'}`);
  }

  private store(txn: Txn, key: string, cur: KeyValue | undefined, value: MetaValue, lease: number): Outcome {
    const [createRevision, version] = cur ? [cur.createRevision, cur.version + 1] : [txn.rev, 1];
    const kv: KeyValue = Object.freeze({ key, value: deepFreeze(value), createRevision, modRevision: txn.rev, version, lease });
    this.write(txn, key, kv);
    txn.events.push(Object.freeze({ revision: txn.rev, type: 'put', kv, prev: cur ?? null }));
    return { ok: true, kv, prev: cur ?? null };
  }

  private remove(txn: Txn, cur: KeyValue): void {
    this.write(txn, cur.key, undefined);
    const tombstone = Object.freeze({ key: cur.key, value: null, createRevision: 0, modRevision: txn.rev, version: 0, lease: 0 });
    txn.events.push(Object.freeze({ revision: txn.rev, type: 'delete', kv: tombstone, prev: cur }));
  }

  private write(txn: Txn, key: string, next: KeyValue | undefined): void {
    const cur = this.kvs.get(key);
    this.link(key, cur, next);
    txn.undo.push(() => this.link(key, next, cur));
    txn.changed = true;
  }

  /** Replaces `from` by `to` for key, keeping the lease -> keys index in step. */
  private link(key: string, from: KeyValue | undefined, to: KeyValue | undefined): void {
    if (from?.lease) this.leaseTable.get(from.lease)?.keys.delete(key);
    if (to) this.kvs.set(key, to);
    else this.kvs.delete(key);
    if (to?.lease) this.leaseTable.get(to.lease)?.keys.add(key);
  }

  private record(ev: WatchEvent): void {
    this.history.push(ev);
    if (this.history.length - this.historyStart > this.historySize) {
      this.compactRev = this.history[this.historyStart++]!.revision;
      // Amortized O(1) trimming instead of shift() on every event.
      if (this.historyStart > 1024 && this.historyStart * 2 > this.history.length) {
        this.history = this.history.slice(this.historyStart);
        this.historyStart = 0;
      }
    }
    for (const fn of [...this.changeListeners]) notify(() => fn(ev));
  }

  get(key: string): KeyValue | undefined {
    return this.kvs.get(key);
  }

  /** Sorted by key (JS string order); '' lists all. Costs what it returns, not the store's size. */
  list(prefix: string): KeyValue[] {
    const out: KeyValue[] = [];
    for (const [key, kv] of this.kvs.entries(prefix)) {
      if (!key.startsWith(prefix)) break;
      out.push(kv);
    }
    return out;
  }

  get size(): number {
    return this.kvs.size;
  }

  /**
   * One page of list(prefix): keys after `after` (exclusive), at most `limit` of them, and no more
   * than `maxBytes` of encoded key-values (always at least one, so a page never stalls). `more`:
   * whether keys remain after the last one returned.
   */
  listPage(prefix: string, o: { after?: string; limit: number; maxBytes: number }): { kvs: KeyValue[]; more: boolean } {
    const from = o.after !== undefined && o.after > prefix ? o.after : prefix;
    const kvs: KeyValue[] = [];
    let bytes = 0;
    for (const [key, kv] of this.kvs.entries(from)) {
      if (!key.startsWith(prefix)) break;
      if (o.after !== undefined && key <= o.after) continue;
      if (kvs.length >= o.limit) return { kvs, more: true };
      const size = packr.pack(kv).byteLength;
      if (kvs.length > 0 && bytes + size > o.maxBytes) return { kvs, more: true };
      kvs.push(kv);
      bytes += size;
    }
    return { kvs, more: false };
  }

  leases(): { id: number; ttlMs: number; keys: string[] }[] {
    return [...this.leaseTable.keys()].sort((a, b) => a - b).map((id) => this.lease(id)!);
  }

  lease(id: number): { id: number; ttlMs: number; keys: string[] } | undefined {
    const l = this.leaseTable.get(id);
    return l && { id, ttlMs: l.ttlMs, keys: [...l.keys].sort() };
  }

  /** Events with revision > fromRevision under prefix, or compacted when some of them may be gone (re-list, then watch from the list's revision). */
  changesSince(fromRevision: number, prefix: string): { events: WatchEvent[] } | { compacted: true; compactRevision: number } {
    if (fromRevision < this.compactRev) return { compacted: true, compactRevision: this.compactRev };
    let lo = this.historyStart;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.history[mid]!.revision <= fromRevision) lo = mid + 1;
      else hi = mid;
    }
    const events: WatchEvent[] = [];
    for (let i = lo; i < this.history.length; i++) if (this.history[i]!.kv.key.startsWith(prefix)) events.push(this.history[i]!);
    return { events };
  }

  /** Called synchronously during apply, after the entry committed, in log order. */
  onChange(fn: (ev: WatchEvent) => void): () => void {
    return subscribe(this.changeListeners, fn);
  }

  /** Called after every entry, including empty ones and failures. */
  onApplied(fn: (index: number, result: MetaResult) => void): () => void {
    return subscribe(this.appliedListeners, fn);
  }

  /**
   * The state at this point, captured in O(sessions + leases): the key-value tree is cloned
   * copy-on-write and session records are copied when next changed. Encoded a batch per piece.
   */
  snapshotPieces(): Iterable<Uint8Array> {
    const kvs = this.kvs.clone();
    const sessions = [...this.sessions];
    this.sessionGen++;
    const header: MetaSnapshotHeader = {
      v: 2,
      revision: this.rev,
      sessionsOpened: this.sessionsOpened,
      leases: [...this.leaseTable].sort(([a], [b]) => a - b).map(([id, l]) => [id, l.ttlMs]),
      sessionCount: sessions.length,
      kvCount: kvs.size,
    };
    return encodeSnapshot(header, sessions, kvs);
  }

  /** The whole snapshot in one buffer (tests, digest; members use snapshotPieces). */
  snapshot(): Uint8Array {
    return concatBytes([...this.snapshotPieces()]);
  }

  /**
   * Replaces everything, a batch per step; on a bad snapshot it throws and leaves the current
   * state untouched. Listeners are kept.
   */
  *restoreSteps(data: SnapshotData): Iterable<void> {
    const reader = new PieceReader(data);
    if (reader.done) throw new Error('metadata snapshot: empty');
    const magic = snapshotBytes(data) >= SNAPSHOT_MAGIC.length ? reader.read(SNAPSHOT_MAGIC.length) : null;
    if (!magic || !SNAPSHOT_MAGIC.every((b, i) => magic[i] === b)) {
      this.restoreV1(concatBytes(data));
      return;
    }
    const header = unpackRecord(reader) as MetaSnapshotHeader;
    if (!isPlainObject(header) || header.v !== 2 || !isUint(header.revision) || !isUint(header.sessionsOpened)
      || !Array.isArray(header.leases) || !isUint(header.sessionCount) || !isUint(header.kvCount)) {
      throw new Error('metadata snapshot: unsupported format');
    }
    const sessions = new Map<string, SessionRecord>();
    while (sessions.size < header.sessionCount) {
      for (const t of unpackBatch(reader, 'sessions') as SessionTuple[]) sessions.set(t[0], sessionRecord(t, this.sessionGen));
      yield;
    }
    const leases = new Map<number, Lease>(header.leases.map(([id, ttlMs]) => [id, { ttlMs, keys: new Set<string>() }]));
    const kvs = new BTree<string, KeyValue>();
    let last: string | null = null;
    while (kvs.size < header.kvCount) {
      for (const t of unpackBatch(reader, 'key-values') as KvTuple[]) {
        const kv = kvFromTuple(t, leases);
        if (last !== null && !(kv.key > last)) throw new Error(`metadata snapshot: key "${kv.key}" out of order`);
        last = kv.key;
        kvs.set(kv.key, kv);
      }
      yield;
    }
    if (kvs.size !== header.kvCount || sessions.size !== header.sessionCount || !reader.done) {
      throw new Error('metadata snapshot: record counts do not match its header');
    }
    this.install(header.revision, header.sessionsOpened, kvs, leases, sessions);
  }

  /** restoreSteps all at once (tests and tools). */
  restore(data: Uint8Array | SnapshotData): void {
    restoreNow(this, data);
  }

  private restoreV1(data: Uint8Array): void {
    let snap: MetaSnapshotV1;
    try {
      snap = packr.unpack(data) as MetaSnapshotV1;
    } catch (err) {
      throw new Error(`metadata snapshot: undecodable (${(err as Error).message})`);
    }
    if (!isPlainObject(snap) || snap.v !== 1 || !isUint(snap.revision) || ![snap.kvs, snap.leases, snap.sessions].every(Array.isArray)) {
      throw new Error('metadata snapshot: unsupported format');
    }
    const leases = new Map<number, Lease>(snap.leases.map(([id, ttlMs]) => [id, { ttlMs, keys: new Set<string>() }]));
    const kvs = new BTree<string, KeyValue>();
    for (const t of snap.kvs) kvs.set(t[0], kvFromTuple(t, leases));
    // v1 sessions were client-chosen ids: a retry from one now gets sessionExpired (unknown outcome), never a second apply.
    this.install(snap.revision, 0, kvs, leases, new Map());
  }

  private install(revision: number, sessionsOpened: number, kvs: BTree<string, KeyValue>, leases: Map<number, Lease>, sessions: Map<string, SessionRecord>): void {
    this.sessions = sessions;
    this.sessionsOpened = sessionsOpened;
    this.evictSessions();
    this.kvs = kvs;
    this.leaseTable = leases;
    this.rev = revision;
    this.history = [];
    this.historyStart = 0;
    this.compactRev = this.rev;
  }

  /** sha256 of the snapshot bytes: equal digests = equal data, leases, revision and sessions (history is not state). */
  digest(): string {
    return createHash('sha256').update(this.snapshot()).digest('hex');
  }
}

function* encodeSnapshot(header: MetaSnapshotHeader, sessions: [string, SessionRecord][], kvs: BTree<string, KeyValue>): Generator<Uint8Array> {
  const head = lengthPrefixed(packr.pack(header));
  const first = new Uint8Array(SNAPSHOT_MAGIC.length + head.length);
  first.set(SNAPSHOT_MAGIC);
  first.set(head, SNAPSHOT_MAGIC.length);
  yield first;
  for (let i = 0; i < sessions.length; i += SNAPSHOT_SESSION_BATCH) {
    const batch: SessionTuple[] = sessions.slice(i, i + SNAPSHOT_SESSION_BATCH)
      .map(([client, r]) => [client, r.ack, [...r.results].sort(([a], [b]) => a - b)]);
    yield lengthPrefixed(packr.pack(batch));
  }
  let batch: KvTuple[] = [];
  for (const [, kv] of kvs.entries()) {
    batch.push([kv.key, kv.value, kv.createRevision, kv.modRevision, kv.version, kv.lease]);
    if (batch.length === SNAPSHOT_KV_BATCH) {
      yield lengthPrefixed(packr.pack(batch));
      batch = [];
    }
  }
  if (batch.length) yield lengthPrefixed(packr.pack(batch));
}

function unpackRecord(reader: PieceReader): unknown {
  try {
    const rec = reader.record();
    // As a Buffer, like entry bytes: binary values then decode as Buffers on every path.
    return packr.unpack(Buffer.from(rec.buffer, rec.byteOffset, rec.byteLength));
  } catch (err) {
    throw new Error(`metadata snapshot: undecodable record (${(err as Error).message})`);
  }
}

function unpackBatch(reader: PieceReader, what: string): unknown[] {
  if (reader.done) throw new Error(`metadata snapshot: ends before all ${what}`);
  const batch = unpackRecord(reader);
  if (!Array.isArray(batch) || batch.length === 0) throw new Error(`metadata snapshot: bad ${what} record`);
  return batch;
}

function kvFromTuple(t: KvTuple, leases: Map<number, Lease>): KeyValue {
  if (!Array.isArray(t) || typeof t[0] !== 'string') throw new Error('metadata snapshot: bad key-value');
  const [key, value, createRevision, modRevision, version, lease] = t;
  if (lease) {
    const l = leases.get(lease);
    if (!l) throw new Error(`metadata snapshot: key "${key}" references missing lease ${lease}`);
    l.keys.add(key);
  }
  return Object.freeze({ key, value: deepFreeze(value), createRevision, modRevision, version, lease });
}

function sessionRecord(t: SessionTuple, gen: number): SessionRecord {
  if (!Array.isArray(t) || typeof t[0] !== 'string' || !isUint(t[1]) || !Array.isArray(t[2])) throw new Error('metadata snapshot: bad session');
  return { ack: t[1], results: new Map(t[2].map(([seq, r]) => [seq, deepFreeze(r)])), gen };
}
