/**
 * A tiny deterministic key/value state machine with exactly-once client sessions.
 * Used by the simulator and tests; every replica applying the same log reaches the same
 * bytes (snapshot) and the same digest.
 */
import { createHash } from 'node:crypto';
import { Packr } from 'msgpackr';
import type { StateMachine } from '../raft/state-machine.ts';
import type { SnapshotData } from '../raft/snapshot-data.ts';
import { concatBytes } from '../bytes.ts';
import type { Entry } from '../raft/types.ts';

export interface KvSession {
  client: string;
  /** Strictly increasing per client; a retry reuses the same seq. */
  seq: number;
}

export type KvCommand = { session?: KvSession } & (
  | { op: 'put'; key: string; value: string }
  | { op: 'delete'; key: string }
  | { op: 'get'; key: string }
  | { op: 'cas'; key: string; expected: string | null; value: string }
  | { op: 'append'; key: string; value: string }
);

export type KvResult =
  | { ok: true; value?: string | null; prev?: string | null; revision: number }
  | { ok: false; error: string };

export interface KvOptions {
  /** Session table bound; the least recently used client (by log order) is evicted beyond it. */
  maxSessions?: number;
}

export const DEFAULT_MAX_SESSIONS = 10_000;

// useRecords: false keeps the encoding self-describing (no shared record structures).
const packr = new Packr({ useRecords: false });

export function encodeKvCommand(cmd: KvCommand): Uint8Array {
  return packr.pack(cmd);
}

/** Decodes and validates; throws an Error('malformed command: ...') on bad input. */
export function decodeKvCommand(bytes: Uint8Array): KvCommand {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    throw new Error(`malformed command: undecodable bytes (${(err as Error).message})`);
  }
  const problem = validate(raw);
  if (problem) throw new Error(`malformed command: ${problem}`);
  return raw as KvCommand;
}

function validate(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not an object';
  const c = raw as Record<string, unknown>;
  if (typeof c.key !== 'string') return 'key must be a string';
  if (c.session !== undefined) {
    const s = c.session as Record<string, unknown> | null;
    if (typeof s !== 'object' || s === null) return 'session must be an object';
    if (typeof s.client !== 'string') return 'session.client must be a string';
    if (!Number.isSafeInteger(s.seq) || (s.seq as number) < 0) return 'session.seq must be a non-negative integer';
  }
  switch (c.op) {
    case 'get':
    case 'delete':
      return null;
    case 'put':
    case 'append':
      return typeof c.value === 'string' ? null : 'value must be a string';
    case 'cas':
      if (typeof c.value !== 'string') return 'value must be a string';
      return c.expected === null || typeof c.expected === 'string' ? null : 'expected must be a string or null';
    default:
      return `unknown op ${JSON.stringify(c.op)}`;
  }
}

interface SessionRecord {
  seq: number;
  result: KvResult;
}

/** Snapshot layout; arrays (not objects) so the byte order is fully determined by us. */
interface KvSnapshot {
  v: 1;
  revision: number;
  /** Sorted by key. */
  data: [string, string][];
  /** Least recently used first (log order), so eviction order survives a restore. */
  sessions: [string, number, KvResult][];
}

export class KvStateMachine implements StateMachine<KvResult> {
  private data = new Map<string, string>();
  /** Map iteration order = LRU order: touching a client re-inserts it at the end. */
  private sessions = new Map<string, SessionRecord>();
  private rev = 0;
  private readonly maxSessions: number;

  constructor(opts: KvOptions = {}) {
    this.maxSessions = opts.maxSessions ?? DEFAULT_MAX_SESSIONS;
  }

  /** Number of mutating commands applied so far. */
  get revision(): number {
    return this.rev;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  apply(entry: Entry): KvResult {
    if (!entry.data) return { ok: false, error: 'malformed command: empty entry' };
    let cmd: KvCommand;
    try {
      cmd = decodeKvCommand(entry.data);
    } catch (err) {
      // A bad command must not crash a replica; every replica returns the same error.
      return { ok: false, error: (err as Error).message };
    }
    const s = cmd.session;
    if (!s) return this.execute(cmd);
    const known = this.sessions.get(s.client);
    if (known && s.seq < known.seq) return { ok: false, error: 'stale sequence' };
    if (known && s.seq === known.seq) {
      this.touch(s.client, known);
      return known.result; // a retry of an already-applied command: do not apply twice
    }
    const result = this.execute(cmd);
    this.touch(s.client, { seq: s.seq, result });
    return result;
  }

  private touch(client: string, rec: SessionRecord): void {
    this.sessions.delete(client);
    this.sessions.set(client, rec);
    while (this.sessions.size > this.maxSessions) {
      const lru = this.sessions.keys().next().value as string;
      this.sessions.delete(lru);
    }
  }

  private execute(cmd: KvCommand): KvResult {
    const prev = this.data.get(cmd.key) ?? null;
    switch (cmd.op) {
      case 'get':
        return { ok: true, value: prev, revision: this.rev };
      case 'put':
        this.data.set(cmd.key, cmd.value);
        return { ok: true, prev, revision: ++this.rev };
      case 'delete':
        this.data.delete(cmd.key);
        return { ok: true, prev, revision: ++this.rev };
      case 'append': {
        const value = (prev ?? '') + cmd.value;
        this.data.set(cmd.key, value);
        return { ok: true, value, prev, revision: ++this.rev };
      }
      case 'cas':
        if (prev !== cmd.expected) return { ok: false, error: 'cas mismatch' };
        this.data.set(cmd.key, cmd.value);
        return { ok: true, prev, revision: ++this.rev };
    }
  }

  /** Local (possibly stale) read. */
  get(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  /** All pairs, sorted by key. */
  entries(): [string, string][] {
    return [...this.data].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  snapshot(): Uint8Array {
    const snap: KvSnapshot = {
      v: 1,
      revision: this.rev,
      data: this.entries(),
      sessions: [...this.sessions].map(([c, r]) => [c, r.seq, r.result]),
    };
    return packr.pack(snap);
  }

  /** Small state (simulator and tests): one piece. */
  snapshotPieces(): Iterable<Uint8Array> {
    return [this.snapshot()];
  }

  *restoreSteps(data: SnapshotData): Iterable<void> {
    this.restore(data.length === 1 ? data[0]! : concatBytes(data));
  }

  restore(bytes: Uint8Array): void {
    const snap = packr.unpack(bytes) as KvSnapshot;
    if (snap?.v !== 1) throw new Error('kv snapshot: unsupported format');
    this.rev = snap.revision;
    this.data = new Map(snap.data);
    this.sessions = new Map(snap.sessions.map(([c, seq, result]) => [c, { seq, result }]));
  }

  /** sha256 of the snapshot bytes: equal digests = equal data, revision and sessions. */
  appliedDigest(): string {
    return createHash('sha256').update(this.snapshot()).digest('hex');
  }
}
