/**
 * The one wire codec: MessagePack (msgpackr) envelopes for everything that crosses the network.
 *
 * Wire format (version 1):
 *   Raft peer traffic:   { v: 1, c: <cluster>, m: <RaftMessage> }
 *   Other traffic:       { v: 1, c: <cluster>, k: <kind>, b: <body> }
 *
 * Messages keep their TypeScript field names on the wire; entries are maps
 * `{ index, term, type, data }`. Binary fields are MessagePack `bin`.
 *
 * Decoding never trusts the input: the size is checked before parsing, the parser runs with
 * structured-clone references disabled and without shared record structures, and every field of a
 * Raft message is type-checked. Any failure is a `DecodeError` with a machine-readable `reason`.
 * Decoded Raft messages are fresh objects holding only the known fields (unknown fields are
 * dropped), and their binary fields are plain `Uint8Array`s holding copies: they never alias the input
 * (entry payloads of one message share one private buffer, so use byteOffset/byteLength, not `.buffer` alone).
 */
import { Packr } from 'msgpackr';
import type { AppendRequest, AppendResponse, RaftMessage, RaftMessageType, SnapshotChunk, SnapshotResponse, TimeoutNow, VoteRequest, VoteResponse } from './raft/messages.ts';
import { EntryType, type ConfState, type Entry, type SnapshotMeta } from './raft/types.ts';

export const WIRE_VERSION = 1;
export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;

export type DecodeErrorReason = 'tooLarge' | 'malformed' | 'badVersion' | 'wrongCluster' | 'unknownType' | 'badShape';

export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  readonly reason: DecodeErrorReason;

  constructor(reason: DecodeErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

export interface DecodeExpectation {
  /** The receiver's cluster name; envelopes for any other cluster are rejected. */
  cluster: string;
  /** Inputs longer than this are rejected before parsing. Default 16 MiB. */
  maxBytes?: number;
}

export interface Envelope {
  kind: string;
  body: unknown;
}

/**
 * Raft path: msgpackr returns binary fields as views into the input; the validator copies them
 * explicitly (once) into plain Uint8Arrays.
 */
const raftPackr = new Packr({ useRecords: false, structuredClone: false });
/** Generic path: the body is not walked, so msgpackr copies binary values itself. */
const envelopePackr = new Packr({ useRecords: false, structuredClone: false, copyBuffers: true });

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * Encodes a Raft message for `cluster`. Only the fields defined for the message's type are written.
 * The result may be a view into a larger internal buffer; it is never overwritten by later calls.
 */
export function encodeRaftMessage(cluster: string, msg: RaftMessage): Uint8Array {
  return raftPackr.pack({ v: WIRE_VERSION, c: cluster, m: toWire(msg) });
}

/** Encodes non-Raft traffic (client API, events, ...): `body` is anything msgpackr can encode. */
export function encodeEnvelope(cluster: string, kind: string, body: unknown): Uint8Array {
  return envelopePackr.pack({ v: WIRE_VERSION, c: cluster, k: kind, b: body });
}

function toWire(msg: RaftMessage): RaftMessage {
  const { from, to, term } = msg;
  switch (msg.type) {
    case 'vote':
      return { type: 'vote', from, to, term, pre: msg.pre, lastLogIndex: msg.lastLogIndex, lastLogTerm: msg.lastLogTerm, transfer: msg.transfer };
    case 'voteResp':
      return { type: 'voteResp', from, to, term, pre: msg.pre, granted: msg.granted };
    case 'append': {
      const src = msg.entries;
      const entries = new Array<Entry>(src.length);
      for (let i = 0; i < src.length; i++) {
        const e = src[i]!;
        entries[i] = { index: e.index, term: e.term, type: e.type, data: e.data };
      }
      return {
        type: 'append', from, to, term,
        prevLogIndex: msg.prevLogIndex, prevLogTerm: msg.prevLogTerm, entries, commit: msg.commit, round: msg.round,
      };
    }
    case 'appendResp':
      return {
        type: 'appendResp', from, to, term,
        success: msg.success, matchIndex: msg.matchIndex, conflictIndex: msg.conflictIndex, conflictTerm: msg.conflictTerm, round: msg.round,
      };
    case 'snapshot': {
      const { meta } = msg;
      return {
        type: 'snapshot', from, to, term,
        meta: { index: meta.index, term: meta.term, conf: { voters: meta.conf.voters, learners: meta.conf.learners } },
        offset: msg.offset, data: msg.data, done: msg.done, totalBytes: msg.totalBytes,
      };
    }
    case 'snapshotResp':
      return {
        type: 'snapshotResp', from, to, term,
        snapshotIndex: msg.snapshotIndex, nextOffset: msg.nextOffset, installed: msg.installed, rejected: msg.rejected,
      };
    case 'timeoutNow':
      return { type: 'timeoutNow', from, to, term };
    default:
      throw new TypeError(`encodeRaftMessage: unknown message type ${describe((msg as { type?: unknown }).type)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Decodes and fully validates a Raft message. Throws `DecodeError` and nothing else. */
export function decodeRaftMessage(bytes: Uint8Array, expected: DecodeExpectation): RaftMessage {
  const env = openEnvelope(raftPackr, bytes, expected);
  return readMessage(env.m);
}

/** Decodes a non-Raft envelope. Size, version and cluster are checked; the body is the caller's to validate. */
export function decodeEnvelope(bytes: Uint8Array, expected: DecodeExpectation): Envelope {
  const env = openEnvelope(envelopePackr, bytes, expected);
  const kind = env.k;
  if (typeof kind !== 'string' || kind.length === 0) {
    throw new DecodeError('badShape', `envelope.k: expected a non-empty kind string, got ${describe(kind)}`);
  }
  return { kind, body: env.b };
}

type Rec = Record<string, unknown>;

function openEnvelope(packr: Packr, bytes: Uint8Array, expected: DecodeExpectation): Rec {
  if (!(bytes instanceof Uint8Array)) {
    throw new DecodeError('malformed', `input: expected a Uint8Array, got ${describe(bytes)}`);
  }
  const maxBytes = expected.maxBytes ?? DEFAULT_MAX_BYTES;
  if (bytes.byteLength > maxBytes) {
    throw new DecodeError('tooLarge', `input: ${bytes.byteLength} bytes exceeds the limit of ${maxBytes} bytes`);
  }
  const env = parse(packr, bytes);
  if (!isRecord(env)) {
    throw new DecodeError('malformed', `envelope: expected a map, got ${describe(env)}`);
  }
  if (env.v !== WIRE_VERSION) {
    throw new DecodeError('badVersion', `envelope.v: unsupported wire version ${describe(env.v)} (expected ${WIRE_VERSION})`);
  }
  if (env.c !== expected.cluster) {
    throw new DecodeError('wrongCluster', `envelope.c: message is for cluster ${describe(env.c)}, expected ${describe(expected.cluster)}`);
  }
  return env;
}

/**
 * Parses exactly one MessagePack value that must span the whole input. Sequential mode (via
 * unpackMultiple) lets trailing bytes be detected without msgpackr's own error path, which
 * JSON-stringifies the whole decoded value.
 */
function parse(packr: Packr, bytes: Uint8Array): unknown {
  // A fresh view: msgpackr caches a `dataView` property on its source, and the caller's array is not ours to mutate.
  const src = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let value: unknown;
  let end = -1;
  try {
    packr.unpackMultiple(src, (v: unknown, _start?: number, stop?: number) => {
      value = v;
      end = stop ?? -1;
      return false;
    });
  } catch (err) {
    throw new DecodeError('malformed', `input: not valid MessagePack (${errorText(err)})`, { cause: err });
  }
  if (end !== src.byteLength) {
    throw new DecodeError('malformed', `input: ${src.byteLength - end} trailing bytes after the envelope`);
  }
  return value;
}

const KNOWN_TYPES: ReadonlySet<string> = new Set<RaftMessageType>(['vote', 'voteResp', 'append', 'appendResp', 'snapshot', 'snapshotResp', 'timeoutNow']);
const ENTRY_TYPES: ReadonlySet<unknown> = new Set<unknown>(Object.values(EntryType));

function readMessage(m: unknown): RaftMessage {
  if (!isRecord(m)) throw new DecodeError('badShape', `message: expected a map, got ${describe(m)}`);
  const type = m.type;
  if (typeof type !== 'string' || !KNOWN_TYPES.has(type)) {
    throw new DecodeError('unknownType', `message.type: unknown Raft message type ${describe(type)}`);
  }
  switch (type as RaftMessageType) {
    case 'vote': {
      const out: VoteRequest = {
        type: 'vote', from: id(m, 'from', type), to: id(m, 'to', type), term: nat(m, 'term', type),
        pre: bool(m, 'pre', type), lastLogIndex: nat(m, 'lastLogIndex', type), lastLogTerm: nat(m, 'lastLogTerm', type),
        transfer: bool(m, 'transfer', type),
      };
      return out;
    }
    case 'voteResp': {
      const out: VoteResponse = {
        type: 'voteResp', from: id(m, 'from', type), to: id(m, 'to', type), term: nat(m, 'term', type),
        pre: bool(m, 'pre', type), granted: bool(m, 'granted', type),
      };
      return out;
    }
    case 'append': {
      const out: AppendRequest = {
        type: 'append', from: id(m, 'from', type), to: id(m, 'to', type), term: nat(m, 'term', type),
        prevLogIndex: nat(m, 'prevLogIndex', type), prevLogTerm: nat(m, 'prevLogTerm', type),
        entries: readEntries(m.entries), commit: nat(m, 'commit', type), round: nat(m, 'round', type),
      };
      return out;
    }
    case 'appendResp': {
      const out: AppendResponse = {
        type: 'appendResp', from: id(m, 'from', type), to: id(m, 'to', type), term: nat(m, 'term', type),
        success: bool(m, 'success', type), matchIndex: nat(m, 'matchIndex', type),
        conflictIndex: nat(m, 'conflictIndex', type), conflictTerm: nat(m, 'conflictTerm', type), round: nat(m, 'round', type),
      };
      return out;
    }
    case 'snapshot': {
      const out: SnapshotChunk = {
        type: 'snapshot', from: id(m, 'from', type), to: id(m, 'to', type), term: nat(m, 'term', type),
        meta: readMeta(m.meta), offset: nat(m, 'offset', type), data: bytesField(m, 'data', type),
        done: bool(m, 'done', type), totalBytes: nat(m, 'totalBytes', type),
      };
      return out;
    }
    case 'snapshotResp': {
      const out: SnapshotResponse = {
        type: 'snapshotResp', from: id(m, 'from', type), to: id(m, 'to', type), term: nat(m, 'term', type),
        snapshotIndex: nat(m, 'snapshotIndex', type), nextOffset: nat(m, 'nextOffset', type),
        installed: bool(m, 'installed', type), rejected: bool(m, 'rejected', type),
      };
      return out;
    }
    case 'timeoutNow': {
      const out: TimeoutNow = { type: 'timeoutNow', from: id(m, 'from', type), to: id(m, 'to', type), term: nat(m, 'term', type) };
      return out;
    }
  }
}

/**
 * Entry payloads are copied into one fresh buffer per message (one allocation instead of one per
 * entry, which dominates decode time for small entries); each `data` is a view into that private
 * buffer, never into the input.
 */
function readEntries(raw: unknown): Entry[] {
  if (!Array.isArray(raw)) bad('append.entries', 'an array', raw);
  const n = raw.length;
  const out = new Array<Entry>(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const e: unknown = raw[i];
    if (!isRecord(e)) bad(`append.entries[${i}]`, 'a map', e);
    const index = e.index;
    if (!isNat(index)) bad(`append.entries[${i}].index`, 'a non-negative integer', index);
    const term = e.term;
    if (!isNat(term)) bad(`append.entries[${i}].term`, 'a non-negative integer', term);
    const type = e.type;
    if (!ENTRY_TYPES.has(type)) bad(`append.entries[${i}].type`, `an entry type (${[...ENTRY_TYPES].join(', ')})`, type);
    const data = e.data;
    if (data instanceof Uint8Array) total += data.byteLength;
    else if (data !== null) bad(`append.entries[${i}].data`, 'bytes or null', data);
    out[i] = { index, term, type: type as EntryType, data: data as Uint8Array | null };
  }
  if (total > 0) {
    const pool = new Uint8Array(total);
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const entry = out[i]!;
      const data = entry.data;
      if (data === null) continue;
      const len = data.byteLength;
      pool.set(data, offset);
      entry.data = pool.subarray(offset, offset + len);
      offset += len;
    }
  } else {
    // Only empty payloads: give each its own empty array rather than a view of the input.
    for (let i = 0; i < n; i++) {
      const entry = out[i]!;
      if (entry.data !== null) entry.data = new Uint8Array(0);
    }
  }
  return out;
}

function readMeta(raw: unknown): SnapshotMeta {
  if (!isRecord(raw)) bad('snapshot.meta', 'a map', raw);
  return { index: nat(raw, 'index', 'snapshot.meta'), term: nat(raw, 'term', 'snapshot.meta'), conf: readConf(raw.conf) };
}

function readConf(raw: unknown): ConfState {
  if (!isRecord(raw)) bad('snapshot.meta.conf', 'a map', raw);
  return { voters: idList(raw, 'voters', 'snapshot.meta.conf'), learners: idList(raw, 'learners', 'snapshot.meta.conf') };
}

// ---------------------------------------------------------------------------------------------
// Field checks. `at` is a static path prefix, so nothing is allocated unless a check fails.

function nat(o: Rec, key: string, at: string): number {
  const v = o[key];
  if (!isNat(v)) bad(`${at}.${key}`, 'a non-negative integer', v);
  return v;
}

function bool(o: Rec, key: string, at: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') bad(`${at}.${key}`, 'a boolean', v);
  return v;
}

function id(o: Rec, key: string, at: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0) bad(`${at}.${key}`, 'a non-empty id string', v);
  return v;
}

function idList(o: Rec, key: string, at: string): string[] {
  const v = o[key];
  if (!Array.isArray(v)) bad(`${at}.${key}`, 'an array', v);
  const out = new Array<string>(v.length);
  for (let i = 0; i < v.length; i++) {
    const s: unknown = v[i];
    if (typeof s !== 'string' || s.length === 0) bad(`${at}.${key}[${i}]`, 'a non-empty id string', s);
    out[i] = s;
  }
  return out;
}

function bytesField(o: Rec, key: string, at: string): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) bad(`${at}.${key}`, 'bytes', v);
  return new Uint8Array(v);
}

function isNat(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function isRecord(v: unknown): v is Rec {
  if (typeof v !== 'object' || v === null) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function bad(path: string, expected: string, actual: unknown): never {
  throw new DecodeError('badShape', `${path}: expected ${expected}, got ${describe(actual)}`);
}

/** A short, non-recursive description of a decoded value for error messages. */
function describe(v: unknown): string {
  switch (typeof v) {
    case 'undefined':
      return 'nothing';
    case 'string':
      return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
    case 'number':
    case 'boolean':
      return String(v);
    case 'bigint':
      return v >= -(2n ** 64n) && v <= 2n ** 64n ? `${v}n` : 'a bigint';
    case 'object':
      if (v === null) return 'null';
      if (Array.isArray(v)) return `an array of ${v.length}`;
      if (v instanceof Uint8Array) return `${v.byteLength} bytes`;
      return isRecord(v) ? 'a map' : 'an object';
    default:
      return `a ${typeof v}`;
  }
}

function errorText(err: unknown): string {
  try {
    const text = err instanceof Error ? err.message : String(err);
    return text.length > 120 ? `${text.slice(0, 120)}…` : text;
  } catch {
    return 'unknown error';
  }
}
