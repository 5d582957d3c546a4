/**
 * On-disk formats: framing, WAL records, snapshot and term/vote files, file names, and
 * reading a segment back with the torn-tail / corruption distinction. No state and no
 * policy: raft-storage.ts decides what to write and when.
 *
 * Frame: magic u16 | payload length u32 | crc32(payload) u32 | payload (big-endian).
 * The same frame wraps the snapshot and term/vote files, so one checker covers all files.
 */
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import type { ConfState, Entry, EntryType, NodeId, SnapshotMeta } from '../raft/types.ts';
import type { SnapshotData } from '../raft/snapshot-data.ts';
import { WalCorruptionError } from './errors.ts';

export const FRAME_MAGIC = 0x5357; // "SW"
export const FRAME_HEADER_BYTES = 10;

// copyBuffers: decoded entry data must not pin (or alias) the whole segment read buffer.
const packr = new Packr({ useRecords: false, copyBuffers: true });

/** Entries replace every stored entry from `firstIndex` on; [term, type, data] keeps them small. */
export type WalRecord =
  | { t: 'e'; i: number; e: [number, EntryType, Uint8Array | null][] }
  | { t: 'c'; c: number };

export function encodeFrame(value: unknown): Uint8Array {
  const payload = packr.pack(value);
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint16(0, FRAME_MAGIC);
  view.setUint32(2, payload.length);
  view.setUint32(6, crc32(payload));
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

export function entriesRecord(entries: Entry[]): WalRecord {
  return { t: 'e', i: entries[0]!.index, e: entries.map((e) => [e.term, e.type, e.data]) };
}

export function recordEntries(record: Extract<WalRecord, { t: 'e' }>): Entry[] {
  return record.e.map(([term, type, data], k) => ({ index: record.i + k, term, type, data: toPlainBytes(data) }));
}

/** msgpackr hands back Buffers; callers compare and store plain Uint8Arrays. */
export function toPlainBytes(data: Uint8Array | null): Uint8Array | null {
  if (data === null) return null;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function isCount(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}

function isRecord(x: unknown): x is WalRecord {
  if (typeof x !== 'object' || x === null) return false;
  const r = x as Record<string, unknown>;
  if (r.t === 'c') return isCount(r.c);
  if (r.t !== 'e' || !isCount(r.i) || r.i < 1 || !Array.isArray(r.e) || r.e.length === 0) return false;
  return r.e.every(
    (e) => Array.isArray(e) && e.length === 3 && isCount(e[0]) && isCount(e[1]) && (e[2] === null || e[2] instanceof Uint8Array),
  );
}

/** Length of a valid frame at `offset`, or a reason it is not one. */
export function checkFrame(bytes: Uint8Array, offset: number): { ok: true; length: number } | { ok: false; reason: string } {
  const remaining = bytes.length - offset;
  if (remaining < FRAME_HEADER_BYTES) return { ok: false, reason: `incomplete header (${remaining} bytes)` };
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, FRAME_HEADER_BYTES);
  if (view.getUint16(0) !== FRAME_MAGIC) return { ok: false, reason: 'bad magic' };
  const length = view.getUint32(2);
  if (length === 0) return { ok: false, reason: 'empty payload' };
  if (length > remaining - FRAME_HEADER_BYTES) return { ok: false, reason: `incomplete payload (${length} bytes declared)` };
  const payload = bytes.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length);
  if (crc32(payload) !== view.getUint32(6)) return { ok: false, reason: 'crc mismatch' };
  return { ok: true, length: FRAME_HEADER_BYTES + length };
}

function decodePayload(file: string, bytes: Uint8Array, offset: number, length: number): unknown {
  try {
    return packr.unpack(bytes.subarray(offset + FRAME_HEADER_BYTES, offset + length));
  } catch (err) {
    // A CRC-valid payload that does not decode was written that way: a bug, not a torn write.
    throw new WalCorruptionError(file, offset, `undecodable payload: ${(err as Error).message}`);
  }
}

/** First offset after `from` where a valid frame starts, or -1. */
function findValidFrame(bytes: Uint8Array, from: number): number {
  const hi = FRAME_MAGIC >> 8;
  const lo = FRAME_MAGIC & 0xff;
  for (let at = from; at + FRAME_HEADER_BYTES <= bytes.length; at++) {
    if (bytes[at] === hi && bytes[at + 1] === lo && checkFrame(bytes, at).ok) return at;
  }
  return -1;
}

export interface SegmentRead {
  records: WalRecord[];
  /** Byte length of the valid prefix; less than the file size when the tail was torn. */
  validBytes: number;
  tornReason: string | null;
}

/**
 * Decodes a segment. A bad frame with no valid frame after it is a torn tail, allowed only
 * where the last write could have been cut: the last segment (`isLast`). Anything else throws.
 * (A valid-looking frame embedded in the payload of a torn record would also be reported as
 * corruption: we prefer refusing to start over silently dropping acknowledged records.)
 */
export function readSegment(file: string, bytes: Uint8Array, isLast: boolean): SegmentRead {
  const records: WalRecord[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const frame = checkFrame(bytes, offset);
    if (!frame.ok) {
      if (!isLast) throw new WalCorruptionError(file, offset, `${frame.reason} in a non-last segment`);
      const next = findValidFrame(bytes, offset + 1);
      if (next >= 0) throw new WalCorruptionError(file, offset, `${frame.reason}, followed by a valid record at byte ${next}`);
      return { records, validBytes: offset, tornReason: frame.reason };
    }
    const value = decodePayload(file, bytes, offset, frame.length);
    if (!isRecord(value)) throw new WalCorruptionError(file, offset, 'record of unknown shape');
    records.push(value);
    offset += frame.length;
  }
  return { records, validBytes: offset, tornReason: null };
}

/** A whole-file single frame (snapshot, term/vote): written atomically, so any damage is corruption. */
export function decodeFramedFile(file: string, bytes: Uint8Array): unknown {
  const frame = checkFrame(bytes, 0);
  if (!frame.ok) throw new WalCorruptionError(file, 0, frame.reason);
  if (frame.length !== bytes.length) throw new WalCorruptionError(file, frame.length, 'trailing bytes after the frame');
  return decodePayload(file, bytes, 0, frame.length);
}

/** Snapshot file content: the snapshot plus where WAL replay must start after compaction. */
export interface SnapshotFile {
  meta: SnapshotMeta;
  data: SnapshotData;
  /** Segments below this are obsolete; segments from it on are replayed. */
  walStartSeq: number;
  /** Commit index right after the snapshot (its commit records may have been compacted). */
  commit: number;
}

function isConf(x: unknown): x is ConfState {
  const c = x as ConfState;
  const names = (a: unknown) => Array.isArray(a) && a.every((n) => typeof n === 'string');
  return typeof x === 'object' && x !== null && names(c.voters) && names(c.learners);
}

/**
 * Snapshot file, version 2: magic | the state machine's bytes | trailer frame | u32 trailer frame
 * length. The data goes first so it can be streamed to disk piece by piece (a large state is
 * hundreds of MB) while its CRC is computed; the trailer says what it is and checks it.
 * Version 1 (still read): one frame holding meta, data, walStartSeq and commit.
 */
export const SNAPSHOT_FILE_MAGIC = new TextEncoder().encode('SCSNAP2\n');

export interface SnapshotTrailer {
  meta: SnapshotMeta;
  walStartSeq: number;
  commit: number;
  dataBytes: number;
  dataCrc: number;
}

export function encodeSnapshotTrailer(t: SnapshotTrailer): Uint8Array {
  const frame = encodeFrame(t);
  const out = new Uint8Array(frame.length + 4);
  out.set(frame);
  new DataView(out.buffer).setUint32(frame.length, frame.length);
  return out;
}

function checkSnapshotShape(file: string, index: number, v: Partial<SnapshotTrailer & SnapshotFile> | null): SnapshotMeta {
  const meta = v?.meta;
  const valid = meta !== undefined && isCount(meta.index) && isCount(meta.term) && isConf(meta.conf) && isCount(v!.walStartSeq) && isCount(v!.commit);
  if (!valid) throw new WalCorruptionError(file, 0, 'snapshot of unknown shape');
  if (meta.index !== index) throw new WalCorruptionError(file, 0, `holds index ${meta.index}, name says ${index}`);
  return { index: meta.index, term: meta.term, conf: { voters: meta.conf.voters, learners: meta.conf.learners } };
}

export function decodeSnapshotFile(file: string, index: number, bytes: Uint8Array): SnapshotFile {
  const magic = SNAPSHOT_FILE_MAGIC;
  if (bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b)) {
    if (bytes.length < magic.length + 4) throw new WalCorruptionError(file, 0, 'snapshot file too short');
    const frameLen = new DataView(bytes.buffer, bytes.byteOffset + bytes.length - 4, 4).getUint32(0);
    const at = bytes.length - 4 - frameLen;
    if (frameLen === 0 || at < magic.length) throw new WalCorruptionError(file, bytes.length - 4, 'bad trailer length');
    const frame = checkFrame(bytes.subarray(0, bytes.length - 4), at);
    if (!frame.ok) throw new WalCorruptionError(file, at, `trailer: ${frame.reason}`);
    const t = decodePayload(file, bytes, at, frame.length) as Partial<SnapshotTrailer> | null;
    const meta = checkSnapshotShape(file, index, t);
    if (!isCount(t!.dataBytes) || !isCount(t!.dataCrc) || t!.dataBytes !== at - magic.length) {
      throw new WalCorruptionError(file, at, 'trailer does not match the data length');
    }
    const data = bytes.subarray(magic.length, at);
    if (crc32(data) !== t!.dataCrc) throw new WalCorruptionError(file, magic.length, 'snapshot data crc mismatch');
    return { meta, data: [data], walStartSeq: t!.walStartSeq!, commit: t!.commit! };
  }
  const v = decodeFramedFile(file, bytes) as Partial<SnapshotFile & { data: Uint8Array }> | null;
  const meta = checkSnapshotShape(file, index, v);
  if (!(v!.data instanceof Uint8Array)) throw new WalCorruptionError(file, 0, 'snapshot of unknown shape');
  return { meta, data: [toPlainBytes(v!.data)!], walStartSeq: v!.walStartSeq!, commit: v!.commit! };
}

export function decodeTermFile(bytes: Uint8Array): { term: number; vote: NodeId | null } {
  const v = decodeFramedFile(TERM_FILE, bytes) as { term?: unknown; vote?: unknown } | null;
  if (!isCount(v?.term) || !(v.vote === null || typeof v.vote === 'string')) {
    throw new WalCorruptionError(TERM_FILE, 0, 'term/vote record of unknown shape');
  }
  return { term: v.term, vote: v.vote };
}

const SEGMENT_RE = /^wal-(\d{16})\.log$/;
const SNAPSHOT_RE = /^snap-(\d{16})\.snap$/;

export const segmentName = (seq: number) => `wal-${String(seq).padStart(16, '0')}.log`;
export const snapshotName = (index: number) => `snap-${String(index).padStart(16, '0')}.snap`;
export const TERM_FILE = 'term-vote';
export const TMP_SUFFIX = '.tmp';

export function parseSegmentName(name: string): number | null {
  const m = SEGMENT_RE.exec(name);
  return m ? Number(m[1]) : null;
}

export function parseSnapshotName(name: string): number | null {
  const m = SNAPSHOT_RE.exec(name);
  return m ? Number(m[1]) : null;
}
