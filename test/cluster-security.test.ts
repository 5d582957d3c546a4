/**
 * Integration: bad input on every subject and the broker's authentication. The members must stay
 * up, count each rejection by reason, and keep serving.
 */
import test from 'ava';
import { Packr } from 'msgpackr';
import { connect, type NatsConnection } from 'nats';
import { encodeEnvelope, encodeRaftMessage } from '../src/codec.ts';
import { subjects } from '../src/nats/subjects.ts';
import type { RaftMessage } from '../src/raft/messages.ts';
import { connectClient, eventually, freshCluster, waitForLeader } from './helpers/local-cluster.ts';

const raw = new Packr({ useRecords: false });

test.serial('bad input on Raft and API subjects is dropped, counted by reason, and the members keep serving', async (t) => {
  const c = await freshCluster("badinput", { logLevel: "info" });
  t.teardown(() => c.stop());
  const client = await connectClient(c);
  t.teardown(() => client.close());
  const leader = await waitForLeader(client, 3);
  const target = leader.id;
  const member = await connect({ servers: c.nats.urls, user: c.credentials.member.user, pass: c.credentials.member.pass });
  t.teardown(() => member.close());
  const raftSubject = subjects.raft(c.cluster, target);
  const vote = (from: string, term: number): RaftMessage => ({ type: 'vote', from, to: target, term, pre: true, lastLogIndex: 0, lastLogTerm: 0, transfer: false });

  member.publish(raftSubject, new Uint8Array([1, 2, 3, 250, 251]));
  member.publish(raftSubject, encodeRaftMessage('another-cluster', vote('n2', 1)));
  member.publish(raftSubject, raw.pack({ v: 1, c: c.cluster, m: { type: 'gossip', from: 'n2', to: target, term: 1 } }));
  member.publish(raftSubject, new Uint8Array(1000 * 1024));
  member.publish(raftSubject, encodeRaftMessage(c.cluster, vote('intruder', 99)));
  member.publish(raftSubject, raw.pack({ v: 1, c: c.cluster, m: { type: 'vote', from: 'n2', to: target, term: 'high' } }));
  await member.flush();

  const counters = async () => (await client.status(target))[0]!.counters;
  const dropped = (reason: string) => `raft_messages_dropped_total{reason="${reason}"}`;
  const seen = await eventually('every bad raft message counted', async () => {
    const k = await counters();
    return ['malformed', 'wrongCluster', 'unknownType', 'tooLarge', 'unknownMember', 'badShape'].every((r) => (k[dropped(r)] ?? 0) >= 1) ? k : null;
  });
  t.is(seen[dropped('unknownMember')], 1);

  // API subject: each bad request gets a clear error reply.
  const api = subjects.api(c.cluster, target);
  const ask = async (nc: NatsConnection, payload: Uint8Array) => {
    const m = await nc.request(api, payload, { timeout: 3000 });
    return raw.unpack(m.data) as { b: { ok: boolean; error?: { name: string; message: string } } };
  };
  const cases: [string, Uint8Array][] = [
    ['random bytes', new Uint8Array([0xc1, 0xff, 0x00])],
    ['wrong cluster', encodeEnvelope('another-cluster', 'req', { op: 'status' })],
    ['unknown op', encodeEnvelope(c.cluster, 'req', { op: 'format-disk' })],
    ['unknown kind', encodeEnvelope(c.cluster, 'gossip', { op: 'status' })],
    ['huge', new Uint8Array(1000 * 1024)],
    ['bad write', encodeEnvelope(c.cluster, 'req', { op: 'write', cmd: new Uint8Array([1, 2, 3]) })],
  ];
  for (const [what, payload] of cases) {
    const res = await ask(member, payload);
    t.false(res.b.ok, what);
    t.is(res.b.error?.name, 'BadRequestError', what);
    t.truthy(res.b.error?.message, what);
  }
  // Oversized values through the client: a clear error, and the cluster keeps going.
  const big = await t.throwsAsync(client.put('big', 'x'.repeat(300 * 1024)));
  t.is(big?.name, 'MetaError');
  t.regex(big!.message, /limit|large/i);
  t.is((await client.put('still', 'ok')).ok, true);
  const after = await client.status();
  t.log(after.map((s) => `${s.id} ${s.role} t${s.term} leader=${s.leader}`).join('; '));
  t.is(after.length, 3);
  t.true(after.every((s) => s.leader === target), 'no election was caused by garbage');
});

test.serial('authentication: no credentials are refused; client credentials cannot publish Raft traffic', async (t) => {
  const c = await freshCluster('auth');
  t.teardown(() => c.stop());
  const client = await connectClient(c);
  t.teardown(() => client.close());
  const leader = await waitForLeader(client, 3);

  const anon = await t.throwsAsync(connect({ servers: c.nats.urls[0], maxReconnectAttempts: 0, reconnect: false }));
  t.regex(String(anon?.message), /authorization/i);
  const wrong = await t.throwsAsync(connect({ servers: c.nats.urls[0], user: c.credentials.client.user, pass: 'wrong', reconnect: false }));
  t.regex(String(wrong?.message), /authorization/i);

  // A client-user connection publishes a well-formed Raft message from a real member id.
  const asClient = await connect({ servers: c.nats.urls, user: c.credentials.client.user, pass: c.credentials.client.pass });
  t.teardown(() => asClient.close());
  const violations: string[] = [];
  void (async () => {
    for await (const s of asClient.status()) if (s.data === 'PERMISSIONS_VIOLATION') violations.push(String(s.data));
  })();
  const follower = (await client.status()).find((s) => s.role !== 'leader')!;
  const forged: RaftMessage = { type: 'timeoutNow', from: leader.id, to: follower.id, term: leader.term };
  asClient.publish(subjects.raft(c.cluster, follower.id), encodeRaftMessage(c.cluster, forged));
  await asClient.flush();
  await eventually('the broker reports a permissions violation to the client', async () => violations.length > 0);

  // A marker through an allowed path proves the member is reachable and processing.
  const member = await connect({ servers: c.nats.urls, user: c.credentials.member.user, pass: c.credentials.member.pass });
  t.teardown(() => member.close());
  member.publish(subjects.raft(c.cluster, follower.id), new Uint8Array([0xc1]));
  await eventually('marker counted', async () => ((await client.status(follower.id))[0]!.counters['raft_messages_dropped_total{reason="malformed"}'] ?? 0) >= 1);
  const k = (await client.status(follower.id))[0]!.counters;
  t.is(k['raft_messages_received_total{type="timeoutNow"}'] ?? 0, 0, 'the forged TimeoutNow reached the member');
  const now = await client.status();
  t.true(now.every((s) => s.term === leader.term && s.leader === leader.id), 'the forged message caused an election');
});
