import { decodeRaftMessage, encodeRaftMessage } from '../src/codec.ts';
import type { AppendRequest } from '../src/raft/messages.ts';
import { EntryType, type Entry } from '../src/raft/types.ts';

const ENTRIES = 64;
const ENTRY_BYTES = 256;
const CLUSTER = 'bench';

const entries: Entry[] = [];
for (let i = 0; i < ENTRIES; i++) {
  const data = new Uint8Array(ENTRY_BYTES);
  for (let j = 0; j < ENTRY_BYTES; j++) data[j] = (i * 31 + j) & 0xff;
  entries.push({ index: 1001 + i, term: 7, type: EntryType.Command, data });
}
const msg: AppendRequest = {
  type: 'append', from: 'node-a', to: 'node-b', term: 7,
  prevLogIndex: 1000, prevLogTerm: 7, entries, commit: 990, round: 123456,
};

function measureOnce(fn: () => void, ms: number): number {
  const start = performance.now();
  const deadline = start + ms;
  let ops = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 100; i++) fn();
    ops += 100;
  }
  return ops / ((performance.now() - start) / 1000);
}

function measure(fn: () => void, ms: number): number {
  const rounds = 5;
  const results: number[] = [];
  for (let i = 0; i < rounds; i++) results.push(measureOnce(fn, ms / rounds));
  results.sort((a, b) => a - b);
  return results[Math.floor(rounds / 2)]!;
}

const durationMs = Number(process.argv[2] ?? 2000);
const bytes = encodeRaftMessage(CLUSTER, msg);
let sink = 0;
measureOnce(() => { sink += decodeRaftMessage(encodeRaftMessage(CLUSTER, msg), { cluster: CLUSTER }).term; }, 300);
const encodeOps = measure(() => { sink += encodeRaftMessage(CLUSTER, msg).byteLength; }, durationMs);
const decodeOps = measure(() => { sink += decodeRaftMessage(bytes, { cluster: CLUSTER }).term; }, durationMs);
const roundTripOps = measure(() => { sink += decodeRaftMessage(encodeRaftMessage(CLUSTER, msg), { cluster: CLUSTER }).term; }, durationMs);

console.log(JSON.stringify({
  message: `append with ${ENTRIES} x ${ENTRY_BYTES}-byte entries`,
  wireBytes: bytes.byteLength,
  encodeOpsPerSec: Math.round(encodeOps),
  decodeOpsPerSec: Math.round(decodeOps),
  roundTripOpsPerSec: Math.round(roundTripOps),
  roundTripMBPerSec: Math.round((roundTripOps * bytes.byteLength) / 1e5) / 10,
  node: process.version,
  statistic: 'median of 5 rounds',
  sink: sink > 0,
}));
