import test from 'ava';
import { checkRequest, MAX_LIST_LIMIT } from '../src/api/protocol.ts';
import type { ExecutionContext } from 'ava';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  DEFAULT_MAX_BYTES,
  DecodeError,
  type DecodeErrorReason,
  WIRE_VERSION,
  decodeEnvelope,
  decodeRaftMessage,
  encodeEnvelope,
  encodeRaftMessage,
} from '../src/codec.ts';
import {
  RAFT_MESSAGE_TYPES,
  type AppendRequest,
  type AppendResponse,
  type RaftMessage,
  type RaftMessageType,
  type SnapshotChunk,
  type SnapshotResponse,
  type TimeoutNow,
  type VoteRequest,
  type VoteResponse,
} from '../src/raft/messages.ts';
import { EntryType, type Entry, type SnapshotMeta } from '../src/raft/types.ts';

const CLUSTER = 'test-cluster';
const EXPECTED = { cluster: CLUSTER };

/** Independent raw encoder, used to craft envelopes the codec itself would never produce. */
const raw = new Packr({ useRecords: false });
const rawEnvelope = (m: unknown, extra: Record<string, unknown> = {}): Uint8Array =>
  raw.pack({ v: WIRE_VERSION, c: CLUSTER, m, ...extra });

// ---------------------------------------------------------------------------------------------
// Arbitraries

const nodeId = fc.oneof(
  fc.string({ minLength: 1, maxLength: 16 }),
  fc.string({ minLength: 1, maxLength: 8, unit: 'binary' }),
  fc.constantFrom('n1', 'n2', 'node-with-a-longer-name-0123456789'),
);
const nat = fc.oneof(
  fc.nat(),
  fc.maxSafeNat(),
  fc.constantFrom(0, 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER),
);
const bytes = fc.uint8Array({ maxLength: 300 });
const entry: fc.Arbitrary<Entry> = fc.record({
  index: nat,
  term: nat,
  type: fc.constantFrom(...Object.values(EntryType)),
  data: fc.option(bytes, { nil: null }),
});
const meta: fc.Arbitrary<SnapshotMeta> = fc.record({
  index: nat,
  term: nat,
  conf: fc.record({ voters: fc.array(nodeId, { maxLength: 7 }), learners: fc.array(nodeId, { maxLength: 4 }) }),
});

const voteArb: fc.Arbitrary<VoteRequest> = fc.record({
  type: fc.constant('vote'), from: nodeId, to: nodeId, term: nat,
  pre: fc.boolean(), lastLogIndex: nat, lastLogTerm: nat, transfer: fc.boolean(),
});
const voteRespArb: fc.Arbitrary<VoteResponse> = fc.record({
  type: fc.constant('voteResp'), from: nodeId, to: nodeId, term: nat, pre: fc.boolean(), granted: fc.boolean(),
});
const appendArb = (minEntries = 0): fc.Arbitrary<AppendRequest> =>
  fc.record({
    type: fc.constant('append'), from: nodeId, to: nodeId, term: nat,
    prevLogIndex: nat, prevLogTerm: nat, entries: fc.array(entry, { minLength: minEntries, maxLength: 20 }), commit: nat, round: nat,
  });
const appendRespArb: fc.Arbitrary<AppendResponse> = fc.record({
  type: fc.constant('appendResp'), from: nodeId, to: nodeId, term: nat,
  success: fc.boolean(), matchIndex: nat, conflictIndex: nat, conflictTerm: nat, round: nat,
});
const snapshotArb = (minVoters = 0): fc.Arbitrary<SnapshotChunk> =>
  fc.record({
    type: fc.constant('snapshot'), from: nodeId, to: nodeId, term: nat,
    meta: fc.record({
      index: nat,
      term: nat,
      conf: fc.record({ voters: fc.array(nodeId, { minLength: minVoters, maxLength: 7 }), learners: fc.array(nodeId, { maxLength: 4 }) }),
    }),
    offset: nat, data: fc.uint8Array({ maxLength: 2000 }), done: fc.boolean(), totalBytes: nat,
  });
const snapshotRespArb: fc.Arbitrary<SnapshotResponse> = fc.record({
  type: fc.constant('snapshotResp'), from: nodeId, to: nodeId, term: nat,
  snapshotIndex: nat, nextOffset: nat, installed: fc.boolean(), rejected: fc.boolean(),
});
const timeoutNowArb: fc.Arbitrary<TimeoutNow> = fc.record({ type: fc.constant('timeoutNow'), from: nodeId, to: nodeId, term: nat });

const ARBS: { [K in RaftMessageType]: fc.Arbitrary<Extract<RaftMessage, { type: K }>> } = {
  vote: voteArb,
  voteResp: voteRespArb,
  append: appendArb(),
  appendResp: appendRespArb,
  snapshot: snapshotArb(),
  snapshotResp: snapshotRespArb,
  timeoutNow: timeoutNowArb,
};
const anyMessage: fc.Arbitrary<RaftMessage> = fc.oneof(...RAFT_MESSAGE_TYPES.map((t) => ARBS[t] as fc.Arbitrary<RaftMessage>));

// ---------------------------------------------------------------------------------------------
// Helpers

function decodeFailure(t: ExecutionContext, fn: () => unknown): DecodeError {
  const err = t.throws(fn, { instanceOf: DecodeError });
  return err as DecodeError;
}

function expectReason(t: ExecutionContext, fn: () => unknown, reason: DecodeErrorReason, messageStart?: string): DecodeError {
  const err = decodeFailure(t, fn);
  t.is(err.reason, reason, err.message);
  if (messageStart !== undefined) t.true(err.message.startsWith(messageStart), `message "${err.message}" should start with "${messageStart}"`);
  return err;
}

/** Every binary field of a decoded message is a plain Uint8Array (not a Buffer). */
function binaries(msg: RaftMessage): Uint8Array[] {
  if (msg.type === 'append') return msg.entries.flatMap((e) => (e.data === null ? [] : [e.data]));
  if (msg.type === 'snapshot') return [msg.data];
  return [];
}

// ---------------------------------------------------------------------------------------------
// Round trips

for (const type of RAFT_MESSAGE_TYPES) {
  test(`round trip: ${type}`, (t) => {
    fc.assert(
      fc.property(ARBS[type] as fc.Arbitrary<RaftMessage>, (msg) => {
        const bytesOut = encodeRaftMessage(CLUSTER, msg);
        t.true(bytesOut instanceof Uint8Array);
        const decoded = decodeRaftMessage(bytesOut, EXPECTED);
        t.deepEqual(decoded, msg);
        for (const b of binaries(decoded)) t.is(Object.getPrototypeOf(b), Uint8Array.prototype);
      }),
      { numRuns: 300 },
    );
  });
}

test('every message type has an arbitrary and covers its round trip', (t) => {
  t.deepEqual(Object.keys(ARBS).sort(), [...RAFT_MESSAGE_TYPES].sort());
  t.is(RAFT_MESSAGE_TYPES.length, 7);
});

test('round trip: earlier encodings stay intact after later encodes', (t) => {
  fc.assert(
    fc.property(fc.array(anyMessage, { minLength: 2, maxLength: 40 }), (msgs) => {
      const encoded = msgs.map((m) => encodeRaftMessage(CLUSTER, m));
      const snapshot = encoded.map((b) => Uint8Array.from(b));
      for (let i = 0; i < 20; i++) encodeRaftMessage(CLUSTER, msgs[i % msgs.length]!);
      encoded.forEach((b, i) => t.deepEqual(Uint8Array.from(b), snapshot[i]));
      encoded.forEach((b, i) => t.deepEqual(decodeRaftMessage(b, EXPECTED), msgs[i]));
    }),
    { numRuns: 50 },
  );
});

test('unknown fields are dropped on both sides', (t) => {
  const msg = { type: 'timeoutNow', from: 'a', to: 'b', term: 3, secret: 'x' } as TimeoutNow;
  const clean: TimeoutNow = { type: 'timeoutNow', from: 'a', to: 'b', term: 3 };
  t.deepEqual(Uint8Array.from(encodeRaftMessage(CLUSTER, msg)), Uint8Array.from(encodeRaftMessage(CLUSTER, clean)));
  const decoded = decodeRaftMessage(encodeRaftMessage(CLUSTER, msg), EXPECTED);
  t.deepEqual(decoded, clean);
  const injected = decodeRaftMessage(rawEnvelope({ type: 'timeoutNow', from: 'a', to: 'b', term: 3, extra: [1, 2] }), EXPECTED);
  t.deepEqual(Object.keys(injected).sort(), ['from', 'term', 'to', 'type']);
});

test('decodes from a Buffer that is a slice of a larger pool', (t) => {
  fc.assert(
    fc.property(anyMessage, fc.nat({ max: 64 }), (msg, pad) => {
      const enc = encodeRaftMessage(CLUSTER, msg);
      const pool = Buffer.alloc(pad + enc.byteLength + 17, 0xc1);
      pool.set(enc, pad);
      t.deepEqual(decodeRaftMessage(pool.subarray(pad, pad + enc.byteLength), EXPECTED), msg);
    }),
    { numRuns: 100 },
  );
});

// ---------------------------------------------------------------------------------------------
// Binary fields are copies

test('decoded binary fields do not change when the input buffer is overwritten', (t) => {
  fc.assert(
    fc.property(fc.oneof(appendArb(1), snapshotArb()), (msg) => {
      const input = Uint8Array.from(encodeRaftMessage(CLUSTER, msg));
      const decoded = decodeRaftMessage(input, EXPECTED);
      const before = binaries(decoded).map((b) => Uint8Array.from(b));
      input.fill(0xa5);
      const after = binaries(decoded);
      t.deepEqual(after.map((b) => Uint8Array.from(b)), before);
      for (const b of after) t.not(b.buffer, input.buffer);
      t.deepEqual(decoded, msg);
    }),
    { numRuns: 200 },
  );
});

test('decoding leaves the input array untouched (no extra properties)', (t) => {
  const input = encodeRaftMessage(CLUSTER, { type: 'timeoutNow', from: 'a', to: 'b', term: 1 });
  const copy = Uint8Array.from(input);
  decodeRaftMessage(copy, EXPECTED);
  decodeEnvelope(encodeEnvelope(CLUSTER, 'k', 1), EXPECTED);
  t.deepEqual(Object.getOwnPropertyNames(copy), Object.getOwnPropertyNames(Uint8Array.from(input)));
});

test('generic envelope binary values are copies too', (t) => {
  const body = { blob: new Uint8Array([1, 2, 3, 4, 5]), nested: [new Uint8Array([9, 9])] };
  const input = Uint8Array.from(encodeEnvelope(CLUSTER, 'blob', body));
  const { kind, body: out } = decodeEnvelope(input, EXPECTED);
  input.fill(0);
  t.is(kind, 'blob');
  t.deepEqual(out, body);
});

// ---------------------------------------------------------------------------------------------
// Envelope checks

test('wrong cluster → wrongCluster, for every message type', (t) => {
  fc.assert(
    fc.property(anyMessage, fc.string({ minLength: 1 }).filter((c) => c !== CLUSTER), (msg, other) => {
      expectReason(t, () => decodeRaftMessage(encodeRaftMessage(other, msg), EXPECTED), 'wrongCluster', 'envelope.c:');
      expectReason(t, () => decodeRaftMessage(encodeRaftMessage(CLUSTER, msg), { cluster: other }), 'wrongCluster');
    }),
    { numRuns: 200 },
  );
  const timeout = { type: 'timeoutNow', from: 'a', to: 'b', term: 1 };
  for (const c of [undefined, null, 5, '', `${CLUSTER} `, CLUSTER.toUpperCase()]) {
    expectReason(t, () => decodeRaftMessage(raw.pack({ v: WIRE_VERSION, c, m: timeout }), EXPECTED), 'wrongCluster');
  }
  expectReason(t, () => decodeRaftMessage(raw.pack({ v: WIRE_VERSION, m: timeout }), EXPECTED), 'wrongCluster');
});

test('bad version → badVersion, for every message type', (t) => {
  fc.assert(
    fc.property(anyMessage, fc.oneof(fc.integer().filter((v) => v !== WIRE_VERSION), fc.constantFrom('1', null, true, 1.5, [1])), (msg, v) => {
      const input = raw.pack({ v, c: CLUSTER, m: msg });
      expectReason(t, () => decodeRaftMessage(input, EXPECTED), 'badVersion', 'envelope.v:');
    }),
    { numRuns: 200 },
  );
  expectReason(t, () => decodeRaftMessage(raw.pack({ c: CLUSTER, m: { type: 'timeoutNow', from: 'a', to: 'b', term: 1 } }), EXPECTED), 'badVersion');
});

test('version is checked before the cluster', (t) => {
  expectReason(t, () => decodeRaftMessage(raw.pack({ v: 2, c: 'elsewhere', m: {} }), EXPECTED), 'badVersion');
});

test('unknown or missing message type → unknownType', (t) => {
  const base = { from: 'a', to: 'b', term: 1 };
  for (const type of ['bogus', 'Vote', 'APPEND', '', 7, null, true, ['vote'], { vote: 1 }, 'toString', '__proto__']) {
    expectReason(t, () => decodeRaftMessage(rawEnvelope({ ...base, type }), EXPECTED), 'unknownType', 'message.type:');
  }
  expectReason(t, () => decodeRaftMessage(rawEnvelope(base), EXPECTED), 'unknownType', 'message.type:');
  fc.assert(
    fc.property(fc.string().filter((s) => !(RAFT_MESSAGE_TYPES as readonly string[]).includes(s)), (type) => {
      expectReason(t, () => decodeRaftMessage(rawEnvelope({ ...base, type }), EXPECTED), 'unknownType');
    }),
  );
});

test('message that is not a map → badShape', (t) => {
  for (const m of [undefined, null, 5, 'vote', [], [{ type: 'vote' }], new Uint8Array(3)]) {
    expectReason(t, () => decodeRaftMessage(rawEnvelope(m), EXPECTED), 'badShape', 'message:');
  }
});

test('envelope that is not a map → malformed', (t) => {
  for (const env of [1, 'x', null, [1, CLUSTER, {}], new Uint8Array(4), true]) {
    expectReason(t, () => decodeRaftMessage(raw.pack(env), EXPECTED), 'malformed', 'envelope:');
    expectReason(t, () => decodeEnvelope(raw.pack(env), EXPECTED), 'malformed', 'envelope:');
  }
});

test('invalid MessagePack, empty input, trailing bytes and non-bytes → malformed', (t) => {
  const good = encodeRaftMessage(CLUSTER, { type: 'timeoutNow', from: 'a', to: 'b', term: 1 });
  const inputs: Uint8Array[] = [
    new Uint8Array(0),
    good.subarray(0, good.byteLength - 1),
    Uint8Array.from([...good, 0x00]),
    Uint8Array.from([...good, ...good]),
  ];
  for (const input of inputs) {
    expectReason(t, () => decodeRaftMessage(input, EXPECTED), 'malformed', 'input:');
    expectReason(t, () => decodeEnvelope(input, EXPECTED), 'malformed', 'input:');
  }
  // 0xc1 is "never used" in MessagePack; msgpackr yields a sentinel object, which is not an envelope.
  expectReason(t, () => decodeRaftMessage(new Uint8Array([0xc1]), EXPECTED), 'malformed');
  expectReason(t, () => decodeEnvelope(new Uint8Array([0xc1]), EXPECTED), 'malformed');
  for (const notBytes of ['abc', null, undefined, [1, 2], new ArrayBuffer(4), 5]) {
    expectReason(t, () => decodeRaftMessage(notBytes as unknown as Uint8Array, EXPECTED), 'malformed', 'input:');
  }
});

test('trailing bytes after a large value are rejected without stringifying it', (t) => {
  const big = encodeEnvelope(CLUSTER, 'blob', new Uint8Array(8 * 1024 * 1024));
  const input = new Uint8Array(big.byteLength + 1);
  input.set(big);
  const err = expectReason(t, () => decodeEnvelope(input, EXPECTED), 'malformed');
  t.regex(err.message, /1 trailing bytes/);
});

// ---------------------------------------------------------------------------------------------
// Field validation: every field of every type, missing and ill-typed

const MISSING = Symbol('missing');
type Path = (string | number)[];
interface Mutation { path: Path; bad: unknown[] }

const BAD_NAT = [MISSING, -1, -0.5, 1.5, '7', null, true, 2 ** 53, NaN, Infinity, [], {}, new Uint8Array(1)];
const BAD_BOOL = [MISSING, 0, 1, 'true', null, [], {}];
const BAD_ID = [MISSING, '', 7, null, ['a'], {}, true, new Uint8Array(1)];
const BAD_BYTES = [MISSING, 'abc', [1, 2, 3], null, 5, {}, true];
const BAD_ENTRY_DATA = [MISSING, 'abc', [1, 2, 3], 5, {}, true];
const BAD_ENTRY_TYPE = [MISSING, 3, -1, 1.5, '1', null, true, 'Command'];
const BAD_ARRAY = [MISSING, null, {}, 'a', 5, new Uint8Array(2)];
const BAD_MAP = [MISSING, null, [], 'a', 5, true];

const FIELD_KINDS: { [K in RaftMessageType]: Record<string, unknown[]> } = {
  vote: { from: BAD_ID, to: BAD_ID, term: BAD_NAT, pre: BAD_BOOL, lastLogIndex: BAD_NAT, lastLogTerm: BAD_NAT, transfer: BAD_BOOL },
  voteResp: { from: BAD_ID, to: BAD_ID, term: BAD_NAT, pre: BAD_BOOL, granted: BAD_BOOL },
  append: { from: BAD_ID, to: BAD_ID, term: BAD_NAT, prevLogIndex: BAD_NAT, prevLogTerm: BAD_NAT, entries: BAD_ARRAY, commit: BAD_NAT, round: BAD_NAT },
  appendResp: {
    from: BAD_ID, to: BAD_ID, term: BAD_NAT, success: BAD_BOOL, matchIndex: BAD_NAT, conflictIndex: BAD_NAT, conflictTerm: BAD_NAT, round: BAD_NAT,
  },
  snapshot: { from: BAD_ID, to: BAD_ID, term: BAD_NAT, meta: BAD_MAP, offset: BAD_NAT, data: BAD_BYTES, done: BAD_BOOL, totalBytes: BAD_NAT },
  snapshotResp: { from: BAD_ID, to: BAD_ID, term: BAD_NAT, snapshotIndex: BAD_NAT, nextOffset: BAD_NAT, installed: BAD_BOOL, rejected: BAD_BOOL },
  timeoutNow: { from: BAD_ID, to: BAD_ID, term: BAD_NAT },
};

/** Nested mutations that need a message with at least one entry / voter. */
function nestedMutations(msg: RaftMessage): Mutation[] {
  if (msg.type === 'append') {
    const i = msg.entries.length - 1;
    return [
      { path: ['entries', i], bad: [null, 5, 'x', [], true] },
      { path: ['entries', i, 'index'], bad: BAD_NAT },
      { path: ['entries', i, 'term'], bad: BAD_NAT },
      { path: ['entries', i, 'type'], bad: BAD_ENTRY_TYPE },
      { path: ['entries', i, 'data'], bad: BAD_ENTRY_DATA },
    ];
  }
  if (msg.type === 'snapshot') {
    const j = msg.meta.conf.voters.length - 1;
    return [
      { path: ['meta', 'index'], bad: BAD_NAT },
      { path: ['meta', 'term'], bad: BAD_NAT },
      { path: ['meta', 'conf'], bad: BAD_MAP },
      { path: ['meta', 'conf', 'voters'], bad: BAD_ARRAY },
      { path: ['meta', 'conf', 'learners'], bad: BAD_ARRAY },
      { path: ['meta', 'conf', 'voters', j], bad: ['', 5, null, [], {}] },
    ];
  }
  return [];
}

function formatPath(type: string, path: Path): string {
  return type + path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
}

function mutate(msg: RaftMessage, path: Path, bad: unknown): unknown {
  const copy = structuredClone(msg) as unknown as Record<string | number, unknown>;
  let target = copy;
  for (const key of path.slice(0, -1)) target = target[key] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (bad === MISSING) {
    if (Array.isArray(target)) target[last as number] = undefined;
    else delete target[last];
  } else {
    target[last] = bad;
  }
  return copy;
}

function checkMutation(t: ExecutionContext, msg: RaftMessage, mutation: Mutation): number {
  let checks = 0;
  for (const bad of mutation.bad) {
    const input = rawEnvelope(mutate(msg, mutation.path, bad));
    const expectedPath = formatPath(msg.type, mutation.path);
    expectReason(t, () => decodeRaftMessage(input, EXPECTED), 'badShape', `${expectedPath}: expected `);
    checks++;
  }
  return checks;
}

test('field table covers exactly the fields of every message type', (t) => {
  for (const type of RAFT_MESSAGE_TYPES) {
    const [sample] = fc.sample(ARBS[type] as fc.Arbitrary<RaftMessage>, { numRuns: 1, seed: 1 });
    t.deepEqual(Object.keys(FIELD_KINDS[type]).sort(), Object.keys(sample!).filter((k) => k !== 'type').sort(), type);
  }
});

for (const type of RAFT_MESSAGE_TYPES) {
  test(`missing or ill-typed field → badShape naming the field: ${type}`, (t) => {
    const arb = (type === 'append' ? appendArb(1) : type === 'snapshot' ? snapshotArb(1) : ARBS[type]) as fc.Arbitrary<RaftMessage>;
    let checks = 0;
    for (const msg of fc.sample(arb, { numRuns: 5, seed: 42 })) {
      t.deepEqual(decodeRaftMessage(rawEnvelope(msg), EXPECTED), msg, 'unmutated sample must decode');
      for (const [field, bad] of Object.entries(FIELD_KINDS[type])) checks += checkMutation(t, msg, { path: [field], bad });
      for (const mutation of nestedMutations(msg)) checks += checkMutation(t, msg, mutation);
    }
    t.true(checks > 0);
  });
}

test('error messages name the exact path and the problem', (t) => {
  const msg: AppendRequest = {
    type: 'append', from: 'a', to: 'b', term: 2, prevLogIndex: 0, prevLogTerm: 0, commit: 0, round: 0,
    entries: [0, 1, 2, 3].map((i) => ({ index: i + 1, term: 2, type: EntryType.Command, data: new Uint8Array([i]) })),
  };
  const err = expectReason(t, () => decodeRaftMessage(rawEnvelope(mutate(msg, ['entries', 3, 'term'], -1)), EXPECTED), 'badShape');
  t.is(err.message, 'append.entries[3].term: expected a non-negative integer, got -1');
  t.is(err.name, 'DecodeError');
  t.true(err instanceof Error);
});

test('entry data may be null and empty payloads stay empty Uint8Arrays', (t) => {
  const msg: AppendRequest = {
    type: 'append', from: 'a', to: 'b', term: 1, prevLogIndex: 0, prevLogTerm: 0, commit: 0, round: 0,
    entries: [
      { index: 1, term: 1, type: EntryType.Noop, data: null },
      { index: 2, term: 1, type: EntryType.Command, data: new Uint8Array(0) },
      { index: 3, term: 1, type: EntryType.ConfChange, data: new Uint8Array([7]) },
    ],
  };
  const decoded = decodeRaftMessage(encodeRaftMessage(CLUSTER, msg), EXPECTED) as AppendRequest;
  t.deepEqual(decoded, msg);
  t.is(decoded.entries[0]!.data, null);
  t.true(decoded.entries[1]!.data instanceof Uint8Array);
  t.is(decoded.entries[1]!.data!.byteLength, 0);

  // Only empty payloads: still no view into the input.
  const onlyEmpty: AppendRequest = { ...msg, entries: [{ index: 1, term: 1, type: EntryType.Command, data: new Uint8Array(0) }] };
  const input = Uint8Array.from(encodeRaftMessage(CLUSTER, onlyEmpty));
  const out = decodeRaftMessage(input, EXPECTED) as AppendRequest;
  t.deepEqual(out, onlyEmpty);
  t.not(out.entries[0]!.data!.buffer, input.buffer);
});

// ---------------------------------------------------------------------------------------------
// Size limit

test('oversize input → tooLarge, checked before parsing', (t) => {
  fc.assert(
    fc.property(anyMessage, (msg) => {
      const enc = encodeRaftMessage(CLUSTER, msg);
      expectReason(t, () => decodeRaftMessage(enc, { cluster: CLUSTER, maxBytes: enc.byteLength - 1 }), 'tooLarge', 'input:');
      t.deepEqual(decodeRaftMessage(enc, { cluster: CLUSTER, maxBytes: enc.byteLength }), msg);
    }),
    { numRuns: 100 },
  );
  // Invalid MessagePack that is too large reports tooLarge, not malformed: nothing was parsed.
  expectReason(t, () => decodeRaftMessage(new Uint8Array(11).fill(0xc1), { cluster: CLUSTER, maxBytes: 10 }), 'tooLarge');
  expectReason(t, () => decodeEnvelope(new Uint8Array(11).fill(0xc1), { cluster: CLUSTER, maxBytes: 10 }), 'tooLarge');
});

test('default limit is 16 MiB', (t) => {
  t.is(DEFAULT_MAX_BYTES, 16 * 1024 * 1024);
  expectReason(t, () => decodeRaftMessage(new Uint8Array(DEFAULT_MAX_BYTES + 1).fill(0xc1), EXPECTED), 'tooLarge');
  expectReason(t, () => decodeEnvelope(new Uint8Array(DEFAULT_MAX_BYTES + 1).fill(0xc1), EXPECTED), 'tooLarge');
  const justFits = encodeEnvelope(CLUSTER, 'blob', new Uint8Array(DEFAULT_MAX_BYTES - 64));
  t.true(justFits.byteLength <= DEFAULT_MAX_BYTES);
  t.is(decodeEnvelope(justFits, EXPECTED).kind, 'blob');
});

// ---------------------------------------------------------------------------------------------
// Hostile input

function onlyDecodeErrors(decode: () => unknown): boolean {
  try {
    decode();
    return true;
  } catch (err) {
    return err instanceof DecodeError;
  }
}

test('random bytes only ever produce DecodeError', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (input) => {
      t.true(onlyDecodeErrors(() => decodeRaftMessage(input, EXPECTED)));
      t.true(onlyDecodeErrors(() => decodeEnvelope(input, EXPECTED)));
    }),
    { numRuns: 20_000 },
  );
});

test('random bytes behind a valid-looking envelope prefix only produce DecodeError', (t) => {
  // Starts like a real envelope so the parser gets past the first tokens more often.
  const prefix = encodeRaftMessage(CLUSTER, { type: 'timeoutNow', from: 'a', to: 'b', term: 1 }).subarray(0, 8);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (tail) => {
      const input = Uint8Array.from([...prefix, ...tail]);
      t.true(onlyDecodeErrors(() => decodeRaftMessage(input, EXPECTED)));
      t.true(onlyDecodeErrors(() => decodeEnvelope(input, EXPECTED)));
    }),
    { numRuns: 10_000 },
  );
});

test('mutated valid encodings either decode to a valid message or throw DecodeError', (t) => {
  const edit = fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }), op: fc.constantFrom('set', 'insert', 'delete', 'truncate') });
  fc.assert(
    fc.property(anyMessage, fc.array(edit, { minLength: 1, maxLength: 4 }), (msg, edits) => {
      const bytesArr = [...encodeRaftMessage(CLUSTER, msg)];
      for (const { at, byte, op } of edits) {
        const i = at % (bytesArr.length + 1);
        if (op === 'set') bytesArr[Math.min(i, bytesArr.length - 1)] = byte;
        else if (op === 'insert') bytesArr.splice(i, 0, byte);
        else if (op === 'delete') bytesArr.splice(i, 1);
        else bytesArr.length = i;
      }
      const input = Uint8Array.from(bytesArr);
      try {
        const decoded = decodeRaftMessage(input, EXPECTED);
        // Whatever survived validation must be a well-formed message that round-trips.
        t.deepEqual(decodeRaftMessage(encodeRaftMessage(CLUSTER, decoded), EXPECTED), decoded);
      } catch (err) {
        t.true(err instanceof DecodeError, String(err));
      }
      t.true(onlyDecodeErrors(() => decodeEnvelope(input, EXPECTED)));
    }),
    { numRuns: 5_000 },
  );
});

test('hostile MessagePack constructs only produce DecodeError', (t) => {
  const hostile: Uint8Array[] = [
    new Uint8Array(200_000).fill(0x91), // deeply nested arrays: stack exhaustion
    new Uint8Array(200_000).fill(0x81).map((b, i) => (i % 2 ? 0xa0 : b)), // deeply nested maps
    Uint8Array.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]), // array32 claiming 4G elements
    Uint8Array.from([0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 0x61, 0x01]), // map32 claiming 4G pairs
    Uint8Array.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]), // str32 longer than the input
    Uint8Array.from([0xc6, 0xff, 0xff, 0xff, 0xff, 0x61]), // bin32 longer than the input
    Uint8Array.from([0xd6, 0x70, 0, 0, 0, 1]), // structured-clone pointer without a target
    Uint8Array.from([0xd6, 0x69, 0, 0, 0, 1, 0x91, 0xd6, 0x70, 0, 0, 0, 1]), // self-referencing clone
    Uint8Array.from([0xd4, 0x72, 0x40, 0x91, 0xa1, 0x61, 0x40, 0x40, 0x40]), // record definitions
    Uint8Array.from([0xc7, 0x05, 0x62, 0x7f, 0xff, 0xff, 0xff, 0x00]), // bundled strings with a wild offset
    Uint8Array.from([0xd4, 0x65, 0x92]), // error extension
    Uint8Array.from([0xd4, 0x78, 0x92, 0xa1, 0x28, 0xa0]), // regexp extension with an invalid pattern
    Uint8Array.from([0xc7, 0x02, 0x74, 0x09, 0x00]), // misaligned Float64Array
  ];
  for (const input of hostile) {
    t.true(onlyDecodeErrors(() => decodeRaftMessage(input, EXPECTED)));
    t.true(onlyDecodeErrors(() => decodeEnvelope(input, EXPECTED)));
  }
  // The same constructs placed where the message should be are rejected as a bad message, not crashes.
  for (const m of [new Set([1]), new Date(0), /x/, new Error('boom'), new Float64Array(2), new Map([['type', 'vote']])]) {
    expectReason(t, () => decodeRaftMessage(rawEnvelope(m), EXPECTED), 'badShape');
  }
});

test('structured-clone references (cycles, shared objects) are refused', (t) => {
  const cloning = new Packr({ useRecords: false, structuredClone: true });
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const cyclicList: unknown[] = [1];
  cyclicList.push(cyclicList);
  const shared = { x: [1] };
  for (const b of [cyclic, cyclicList, { one: shared, two: shared }]) {
    const input = cloning.pack({ v: WIRE_VERSION, c: CLUSTER, k: 'k', b });
    expectReason(t, () => decodeEnvelope(input, EXPECTED), 'malformed', 'input:');
  }
  const entry = { index: 1, term: 1, type: EntryType.Command, data: null };
  const append = { type: 'append', from: 'a', to: 'b', term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [entry, entry], commit: 0, round: 0 };
  const sharedInput = cloning.pack({ v: WIRE_VERSION, c: CLUSTER, m: append });
  expectReason(t, () => decodeRaftMessage(sharedInput, EXPECTED), 'malformed', 'input:');
  t.deepEqual(decodeRaftMessage(rawEnvelope(append), EXPECTED), append as AppendRequest);
});

test('uint64 and negative int64 field values are rejected as badShape', (t) => {
  // Hand-built envelope: { v: 1, c: CLUSTER, m: { type: 'timeoutNow', from: 'a', to: 'b', term: <int> } }
  const str = (x: string): number[] => [...raw.pack(x)];
  const head = [
    0x83, ...str('v'), 0x01, ...str('c'), ...str(CLUSTER), ...str('m'),
    0x84, ...str('type'), ...str('timeoutNow'), ...str('from'), ...str('a'), ...str('to'), ...str('b'), ...str('term'),
  ];
  const ok = Uint8Array.from([...head, 0x05]);
  t.deepEqual(decodeRaftMessage(ok, EXPECTED), { type: 'timeoutNow', from: 'a', to: 'b', term: 5 });
  const uint64 = Uint8Array.from([...head, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  expectReason(t, () => decodeRaftMessage(uint64, EXPECTED), 'badShape', 'timeoutNow.term:');
  const int64 = Uint8Array.from([...head, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
  expectReason(t, () => decodeRaftMessage(int64, EXPECTED), 'badShape', 'timeoutNow.term:');
});

// ---------------------------------------------------------------------------------------------
// Generic envelopes

/**
 * JSON-like bodies, normalised the way MessagePack carries them: msgpackr writes -0 as the integer 0
 * and renames a `__proto__` key to `__proto_` on decode, so neither is expected to round-trip.
 */
const jsonBody = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v, (k, x: unknown) => (k === '__proto__' ? undefined : x))) as unknown);

test('generic envelope round trip', (t) => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 32 }),
      fc.record({ json: jsonBody, bin: fc.uint8Array({ maxLength: 100 }), list: fc.array(fc.oneof(fc.integer(), fc.string(), fc.boolean())) }),
      (kind, body) => {
        const decoded = decodeEnvelope(encodeEnvelope(CLUSTER, kind, body), EXPECTED);
        t.is(decoded.kind, kind);
        t.deepEqual(decoded.body, body);
      },
    ),
    { numRuns: 300 },
  );
  t.deepEqual(decodeEnvelope(encodeEnvelope(CLUSTER, 'nothing', undefined), EXPECTED), { kind: 'nothing', body: undefined });
});

test('generic envelope: wrong cluster, bad version, size limit, missing kind', (t) => {
  const enc = encodeEnvelope('other', 'k', { a: 1 });
  expectReason(t, () => decodeEnvelope(enc, EXPECTED), 'wrongCluster', 'envelope.c:');
  expectReason(t, () => decodeEnvelope(raw.pack({ v: 2, c: CLUSTER, k: 'k', b: 1 }), EXPECTED), 'badVersion', 'envelope.v:');
  expectReason(t, () => decodeEnvelope(raw.pack({ c: CLUSTER, k: 'k', b: 1 }), EXPECTED), 'badVersion');
  const ok = encodeEnvelope(CLUSTER, 'k', { a: 1 });
  expectReason(t, () => decodeEnvelope(ok, { cluster: CLUSTER, maxBytes: ok.byteLength - 1 }), 'tooLarge');
  for (const k of [MISSING, '', 5, null, ['k']]) {
    const env: Record<string, unknown> = { v: 1, c: CLUSTER, b: 1 };
    if (k !== MISSING) env.k = k;
    expectReason(t, () => decodeEnvelope(raw.pack(env), EXPECTED), 'badShape', 'envelope.k:');
  }
});

test('Raft and generic envelopes are not interchangeable', (t) => {
  const raftBytes = encodeRaftMessage(CLUSTER, { type: 'timeoutNow', from: 'a', to: 'b', term: 1 });
  expectReason(t, () => decodeEnvelope(raftBytes, EXPECTED), 'badShape', 'envelope.k:');
  const generic = encodeEnvelope(CLUSTER, 'raft', { type: 'timeoutNow', from: 'a', to: 'b', term: 1 });
  expectReason(t, () => decodeRaftMessage(generic, EXPECTED), 'badShape', 'message:');
});

test('encodeRaftMessage rejects an unknown message type', (t) => {
  t.throws(() => encodeRaftMessage(CLUSTER, { type: 'bogus', from: 'a', to: 'b', term: 1 } as unknown as RaftMessage), { instanceOf: TypeError });
});

test('checkRequest: list paging arguments are checked', (t) => {
  const list = (extra: object) => checkRequest({ op: 'list', prefix: 'a/', consistency: 'stale', ...extra });
  t.is(list({}), null);
  t.is(list({ limit: 1, after: 'a/x' }), null);
  t.is(list({ limit: MAX_LIST_LIMIT }), null);
  for (const limit of [0, -1, 1.5, MAX_LIST_LIMIT + 1, '10']) t.regex(list({ limit }) ?? '', /list\.limit must be an integer/);
  t.regex(list({ after: 7 }) ?? '', /list\.after must be a string/);
});
