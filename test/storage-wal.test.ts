import test from 'ava';
import { WalCorruptionError } from '../src/storage/errors.ts';
import { FRAME_HEADER_BYTES, checkFrame, encodeFrame, readSegment, recordEntries, entriesRecord } from '../src/storage/wal.ts';
import type { WalRecord } from '../src/storage/wal.ts';
import { EntryType } from '../src/raft/types.ts';
import type { Entry } from '../src/raft/types.ts';

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Command, data: new Uint8Array([index, term]) });

function segment(...records: WalRecord[]): { bytes: Uint8Array; offsets: number[] } {
  const frames = records.map(encodeFrame);
  const bytes = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  const offsets: number[] = [];
  let at = 0;
  for (const f of frames) {
    offsets.push(at);
    bytes.set(f, at);
    at += f.length;
  }
  return { bytes, offsets };
}

const three = () => segment(entriesRecord([entry(1, 1), entry(2, 1)]), { t: 'c', c: 2 }, entriesRecord([entry(3, 2)]));

test('records round trip through frames, entry data as plain Uint8Array', (t) => {
  const { bytes } = three();
  const read = readSegment('wal', bytes, true);
  t.is(read.tornReason, null);
  t.is(read.validBytes, bytes.length);
  t.is(read.records.length, 3);
  const first = read.records[0]!;
  if (first.t !== 'e') return t.fail();
  const entries = recordEntries(first);
  t.deepEqual(entries, [entry(1, 1), entry(2, 1)]);
  t.is(Object.getPrototypeOf(entries[0]!.data), Uint8Array.prototype);
  // copyBuffers: decoded data must not alias the segment buffer.
  t.not(entries[0]!.data!.buffer, bytes.buffer);
});

test('checkFrame rejects bad magic, crc mismatch and short payloads', (t) => {
  const frame = encodeFrame({ t: 'c', c: 9 });
  t.true(checkFrame(frame, 0).ok);
  const badCrc = frame.slice();
  badCrc[FRAME_HEADER_BYTES] ^= 1;
  t.deepEqual(checkFrame(badCrc, 0), { ok: false, reason: 'crc mismatch' });
  const badMagic = frame.slice();
  badMagic[0] ^= 0xff;
  t.deepEqual(checkFrame(badMagic, 0), { ok: false, reason: 'bad magic' });
  t.false(checkFrame(frame.subarray(0, frame.length - 1), 0).ok);
  t.false(checkFrame(frame.subarray(0, 4), 0).ok);
});

test('a cut last record is a torn tail in the last segment', (t) => {
  const { bytes, offsets } = three();
  for (let cut = offsets[2]! + 1; cut < bytes.length; cut++) {
    const read = readSegment('wal', bytes.subarray(0, cut), true);
    t.is(read.validBytes, offsets[2]);
    t.is(read.records.length, 2);
    t.not(read.tornReason, null);
  }
});

test('a zero-filled or garbage tail is torn, not corrupt', (t) => {
  const { bytes } = three();
  const padded = new Uint8Array(bytes.length + 100);
  padded.set(bytes);
  t.is(readSegment('wal', padded, true).validBytes, bytes.length);
  padded.fill(0xab, bytes.length);
  t.is(readSegment('wal', padded, true).validBytes, bytes.length);
});

test('a bad record followed by a valid one is corruption naming file and offset', (t) => {
  const { bytes, offsets } = three();
  const damaged = bytes.slice();
  damaged[offsets[1]! + FRAME_HEADER_BYTES] ^= 0x40;
  const err = t.throws(() => readSegment('wal-7.log', damaged, true), { instanceOf: WalCorruptionError });
  t.is(err!.file, 'wal-7.log');
  t.is(err!.offset, offsets[1]);
  t.regex(err!.message, /wal-7\.log.*byte \d+/);
});

test('any bad record in a non-last segment is corruption', (t) => {
  const { bytes, offsets } = three();
  const err = t.throws(() => readSegment('wal-1.log', bytes.subarray(0, bytes.length - 1), false), { instanceOf: WalCorruptionError });
  t.is(err!.offset, offsets[2]);
});

test('a CRC-valid frame with an unknown record is corruption, never skipped', (t) => {
  const { bytes } = segment({ t: 'c', c: 1 });
  const odd = encodeFrame({ t: 'zz' });
  const both = new Uint8Array(bytes.length + odd.length);
  both.set(bytes);
  both.set(odd, bytes.length);
  t.throws(() => readSegment('wal', both, true), { instanceOf: WalCorruptionError });
});
