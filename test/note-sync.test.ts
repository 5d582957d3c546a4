/**
 * Integration: note sync over a real 3-member cluster (separate processes, 3 NATS servers).
 * Three NoteSync instances, one per server, each with its own client connection; a member dies
 * and its server is cut off while the others keep editing; after the restart every copy of the
 * notebook is identical and holds every edit, also after the whole cluster restarts. Plus the
 * workbench HTTP server: write on one server, read it back from another.
 */
import test from 'ava';
import { createActor } from 'xstate';
import { NoteSync, type NoteChange } from '../actors/note-sync.ts';
import { noteSyncMachine } from '../machines/note-sync.ts';
import type { ClusterClient, WatchOptions } from '../src/client.ts';
import { NoQuorumError } from '../src/errors.ts';
import type { LocalCluster } from '../src/local-cluster.ts';
import { NoteError, noteKey, type Note } from '../src/notebook/model.ts';
import { NOTEBOOK_REDUCER } from '../src/notebook/reducer.ts';
import { EntryType } from '../src/raft/types.ts';
import { MetadataStateMachine, encodeMetaCommand, type MetaCommand } from '../src/sm/metadata.ts';
import { startWorkbench } from '../src/workbench/server.ts';
import { connectClient, eventually, freshCluster, waitForLeader } from './helpers/local-cluster.ts';

let c: LocalCluster;
let admin: ClusterClient;

test.before(async () => {
  c = await freshCluster('notesync');
  admin = await connectClient(c);
  await waitForLeader(admin, 3);
});

test.after.always(async () => {
  await admin?.close();
  await c?.stop();
});

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as { status: string; message: string; body: any; revision?: number; kind?: string } };
}

test.serial('workbench: a note created and extended on one server reads back from another; bad input gets clear 4xx JSON errors', async (t) => {
  const [ca, cb] = [await connectClient(c), await connectClient(c)];
  const [a, b] = [await startWorkbench({ client: ca }), await startWorkbench({ client: cb })];
  t.teardown(async () => {
    await a.close();
    await b.close();
    await ca.close();
    await cb.close();
  });

  const created = await call(a.url, 'POST', '/api/notebook', { path: '/demo/hello', paragraphs: [{ text: '%md hello' }] });
  t.is(created.status, 201, created.json.message);
  const id = created.json.body.id as string;
  const added = await call(a.url, 'POST', `/api/notebook/${id}/paragraph`, { text: '%sh ls', title: 'files' });
  t.is(added.status, 201, added.json.message);
  const pid = added.json.body.paragraphId as string;

  // Read from the other server once it has caught up with the write's revision (no polling).
  const read = await call(b.url, 'GET', `/api/notebook/${id}?minRevision=${added.json.revision}`);
  t.is(read.status, 200);
  const note = read.json.body as Note;
  t.is(note.path, '/demo/hello');
  t.deepEqual(note.paragraphs.map((p) => [p.text, p.title ?? null]), [['%md hello', null], ['%sh ls', 'files']]);
  t.is(note.version, 2);
  t.deepEqual((await call(b.url, 'GET', `/api/notebook/${id}/paragraph/${pid}`)).json.body.text, '%sh ls');

  const updated = await call(b.url, 'PUT', `/api/notebook/${id}/paragraph/${pid}`, { text: '%sh ls -l', expectedVersion: 2 });
  t.is(updated.status, 200, updated.json.message);
  const stale = await call(a.url, 'PUT', `/api/notebook/${id}/paragraph/${pid}`, { text: 'lost', expectedVersion: 2 });
  t.is(stale.status, 409);
  t.is(stale.json.status, 'CONFLICT');
  t.regex(stale.json.message, /at version 3, the edit expected version 2/);

  const renamed = await call(b.url, 'POST', `/api/notebook/${id}/rename`, { name: 'greeting' });
  t.is(renamed.json.body.path, '/demo/greeting');
  t.is((await call(a.url, 'POST', `/api/notebook/${id}/trash?minRevision=${renamed.json.revision}`)).json.body.trashed, true);
  const restored = await call(b.url, 'POST', `/api/notebook/${id}/restore`);
  t.is(restored.json.body.trashed, false);
  const list = await call(a.url, 'GET', `/api/notebook?minRevision=${restored.json.revision}`);
  t.deepEqual(list.json.body.map((n: { path: string }) => n.path), ['/demo/greeting']);

  const errors: [string, string, unknown, number, RegExp][] = [
    ['POST', '/api/notebook', '{not json', 400, /not JSON/],
    ['POST', '/api/notebook', [1, 2], 400, /must be a JSON object/],
    ['POST', '/api/notebook', { path: 'no-slash' }, 400, /path must start with '\/'/],
    ['POST', '/api/notebook', { path: '/x', colour: 'red' }, 400, /unknown field "colour"/],
    ['POST', '/api/notebook', { path: '/demo/greeting' }, 409, /already has path \/demo\/greeting/],
    ['POST', `/api/notebook/${id}/paragraph`, { text: 5 }, 400, /text must be a string/],
    ['PUT', `/api/notebook/${id}/paragraph/nope`, { text: 'x' }, 404, /paragraph nope is not in note/],
    ['GET', '/api/notebook/NOSUCHNOTE', undefined, 404, /note NOSUCHNOTE does not exist/],
    ['DELETE', '/api/notebook/NOSUCHNOTE', undefined, 404, /does not exist/],
    ['PUT', '/api/notebook/hash', {}, 405, /PUT is not allowed/],
    ['GET', '/api/nothing', undefined, 404, /no route/],
    ['GET', '/api/notebook?minRevision=-3', undefined, 400, /minRevision/],
    ['POST', `/api/notebook/${id}/rename`, {}, 400, /either path .* or name/],
  ];
  for (const [method, path, body, status, message] of errors) {
    const r = await call(a.url, method, path, body);
    t.is(r.status, status, `${method} ${path}: ${r.json.message}`);
    t.regex(r.json.message, message, `${method} ${path}`);
    t.not(r.json.status, 'OK');
  }

  // With X-User the reducer checks permissions in log order.
  const owned = await call(a.url, 'PUT', `/api/notebook/${id}/permissions`, { owners: ['ann'], writers: ['ann'] });
  t.is(owned.status, 200);
  const denied = await call(b.url, 'PUT', `/api/notebook/${id}/paragraph/${pid}?minRevision=${owned.json.revision}`, { text: 'x' }, { 'x-user': 'bob' });
  t.is(denied.status, 403);
  t.is((await call(b.url, 'PUT', `/api/notebook/${id}/paragraph/${pid}`, { text: 'by ann' }, { 'x-user': 'ann' })).status, 200);

  const [ha, hb] = [await call(a.url, 'GET', '/api/notebook/hash'), await call(b.url, 'GET', '/api/notebook/hash')];
  await b.sync.whenRevision(ha.json.body.revision);
  await a.sync.whenRevision(hb.json.body.revision);
  t.is(a.sync.canonicalHash(), b.sync.canonicalHash());
});

/** Waits (on a real condition) until every sync reflects the highest revision any of them has, then returns their hashes. */
async function settle(syncs: NoteSync[], atLeast = 0): Promise<string[]> {
  const target = Math.max(atLeast, ...syncs.map((s) => s.revision));
  await Promise.all(syncs.map((s) => s.whenRevision(target, 20_000)));
  return syncs.map((s) => s.canonicalHash());
}

test.serial('three servers converge on one notebook: through a dead member, a cut-off server, and a full cluster restart', async (t) => {
  const clients = [await connectClient(c), await connectClient(c), await connectClient(c)];
  const syncs = await Promise.all(clients.map((client) => NoteSync.open({ client })));
  t.teardown(async () => {
    await Promise.all(syncs.map((s) => s.close()));
    await Promise.all(clients.map((cl) => cl.close()));
  });
  const [s1, s2] = [syncs[0]!, syncs[1]!];

  // ---- all up: edits on all three servers
  const one = (await s1.createNote({ path: '/proj/one', paragraphs: [{ text: 'first' }] })).note!;
  const two = (await s2.createNote({ path: '/proj/sub/two' })).note!;
  const three = (await syncs[2]!.createNote({ path: '/other/three', paragraphs: [{ text: '%md 3' }] })).note!;
  const fromThird = await syncs[2]!.insertParagraph(one.id, { text: 'added on server 3', index: 0 });
  await s2.setPermissions(two.id, { owners: ['ann'], readers: ['analysts'] });
  await syncs[2]!.setRoles('bob', ['analysts']);

  // The same edit from two servers against the same version: log order picks one, the other is told it is stale.
  await s2.whenRevision(fromThird.revision);
  const v = s1.note(one.id)!.version;
  const pid = one.paragraphs[0]!.id;
  const race = await Promise.allSettled([
    s1.updateParagraph(one.id, pid, { text: 'from s1' }, { expectedVersion: v }),
    s2.updateParagraph(one.id, pid, { text: 'from s2' }, { expectedVersion: v }),
  ]);
  const winners = race.filter((r) => r.status === 'fulfilled');
  t.is(winners.length, 1, 'exactly one of two edits on the same version commits');
  const loser = race.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  t.true(loser.reason instanceof NoteError && loser.reason.kind === 'conflict', String(loser.reason));
  const winningText = race[0]!.status === 'fulfilled' ? 'from s1' : 'from s2';
  let hashes = await settle(syncs);
  t.is(new Set(hashes).size, 1, 'all three agree while everything is up');

  // ---- member n3 dies (kill -9) and server 3 is cut off: its NoteSync goes away
  await c.members[2]!.kill9();
  await syncs[2]!.close();
  const edits: Promise<unknown>[] = [];
  const four = (await s1.createNote({ path: '/proj/four', paragraphs: [{ text: 'select 1' }] })).note!;
  const run = four.paragraphs[0]!.id;
  await s2.runParagraph(four.id, run);
  await s1.setParagraphStatus(four.id, run, 'RUNNING');
  await s2.setParagraphStatus(four.id, run, 'FINISHED', { code: 'SUCCESS', msg: [{ type: 'TABLE', data: 'a\n1\n' }] });
  edits.push(s1.updateParagraph(one.id, pid, { title: 'titled while n3 was down' }));
  edits.push(s2.insertParagraph(two.id, { text: 'written while n3 was down' }));
  await Promise.all(edits);
  const moved = await s1.renameFolder('/proj', '/project');
  t.deepEqual(moved.notes.sort(), [one.id, two.id, four.id].sort());
  await s2.moveNoteToTrash(three.id);
  const gone = (await s1.createNote({ path: '/tmp/scratch' })).note!;
  await s1.moveNoteToTrash(gone.id);
  // Server 3's own client still works through the surviving members.
  const viaThird = await clients[2]!.write({ op: 'reduce', reducer: NOTEBOOK_REDUCER, key: noteKey(three.id), action: { type: 'restoreNote' } });
  t.true(viaThird.ok);
  await s2.moveNoteToTrash(three.id);
  const emptied = await s2.emptyTrash();
  t.deepEqual(emptied.notes.sort(), [three.id, gone.id].sort());
  await s1.setRoles('bob', ['analysts', 'writers']);
  hashes = await settle([s1, s2]);
  t.is(hashes[0], hashes[1]);
  const whileDown = hashes[0]!;

  // ---- the member comes back and server 3 reconnects: it catches up from the log
  c.members[2]!.start();
  syncs[2] = await NoteSync.open({ client: clients[2]! });
  hashes = await settle(syncs);
  t.deepEqual(hashes, [whileDown, whileDown, whileDown]);
  const s3 = syncs[2]!;
  const mine = new Set([one.id, two.id, three.id, four.id, gone.id]);
  t.deepEqual(s3.notes().filter((n) => mine.has(n.id)).map((n) => n.path), ['/project/four', '/project/one', '/project/sub/two']);
  const oneOn3 = s3.note(one.id)!;
  t.deepEqual(oneOn3.paragraphs.map((p) => p.text), ['added on server 3', winningText]);
  t.is(oneOn3.paragraphs[1]!.title, 'titled while n3 was down');
  t.deepEqual(s3.note(two.id)!.paragraphs.map((p) => p.text), ['written while n3 was down']);
  t.deepEqual(s3.note(two.id)!.permissions, { owners: ['ann'], writers: [], runners: [], readers: ['analysts'] });
  const ran = s3.note(four.id)!.paragraphs[0]!;
  t.is(ran.status, 'FINISHED');
  t.deepEqual(ran.results, { code: 'SUCCESS', msg: [{ type: 'TABLE', data: 'a\n1\n' }] });
  t.deepEqual(s3.roles('bob'), ['analysts', 'writers']);
  t.is(s3.note(three.id), undefined);
  // The restarted member's own replica caught up too.
  await eventually('every member applied the same revision', async () => {
    const st = await admin.status();
    return st.length === 3 && st.every((s) => s.revision === st[0]!.revision) && st[0]!.revision >= s1.revision;
  });

  // ---- every member stops and starts again: the notebook is all there, everywhere
  const before = s1.canonicalHash();
  await Promise.all(c.members.map((m) => m.stop()));
  for (const m of c.members) m.start();
  await waitForLeader(admin, 3);
  const probe = await NoteSync.open({ client: admin });
  t.teardown(() => probe.close());
  t.is(probe.canonicalHash(), before, 'a server starting after the restart loads the same notebook');
  hashes = await settle([...syncs, probe]);
  t.deepEqual(hashes, [before, before, before, before]);
  // Equal hashes need no new watch; each server's watch reconnects on its own schedule (backoff).
  const liveAt = performance.now();
  await eventually('every note sync live again', async () => syncs.every((s) => s.state === 'live'));
  t.log(`note syncs live ${Math.round(performance.now() - liveAt)} ms after the notebooks matched`);
  t.true(syncs.every((s) => s.state === 'live'), syncs.map((s) => s.state).join());
  t.log('after the full restart:', syncs.map((s) => s.status()));
  // And they keep following new edits.
  const after = await s2.createNote({ path: '/after/restart' });
  await settle([...syncs, probe], after.revision);
  t.true(syncs.every((s) => s.note(after.note!.id)?.path === '/after/restart'));
});

// ---- NoteSync against an in-process fake client: the lifecycle paths a healthy cluster rarely takes ----

/** A ClusterClient stand-in over one in-memory metadata state machine; the test decides when the watch fails or resyncs. */
class FakeClient {
  readonly sm = new MetadataStateMachine();
  private index = 0;
  failLists = 0;
  /** While muted, changes are not pushed (as if the pushes were lost and the history compacted). */
  muted = false;
  member: string | null = 'n1';
  private readonly watches = new Set<{ prefix: string; o: WatchOptions; revision: number }>();

  constructor() {
    this.sm.onChange((ev) => {
      if (this.muted) return;
      for (const w of this.watches) {
        if (!ev.kv.key.startsWith(w.prefix)) continue;
        queueMicrotask(() => {
          w.o.onEvent(ev);
          w.revision = ev.revision;
        });
      }
    });
  }

  async list(prefix: string) {
    if (this.failLists > 0) {
      this.failLists--;
      throw new NoQuorumError('no leader reachable (fake)');
    }
    return { kvs: this.sm.list(prefix), revision: this.sm.revision, member: 'n1' };
  }

  async watch(prefix: string, o: WatchOptions) {
    const w = { prefix, o, revision: o.fromRevision ?? this.sm.revision };
    this.watches.add(w);
    const fake = this;
    return {
      get revision() {
        return w.revision;
      },
      get member() {
        return fake.member;
      },
      close: async () => void this.watches.delete(w),
    };
  }

  async write(cmd: MetaCommand) {
    return this.sm.apply({ index: ++this.index, term: 1, type: EntryType.Command, data: encodeMetaCommand(cmd) });
  }

  /** What the real client does when its watch history is compacted: a fresh list through onResync. */
  resync(): void {
    for (const w of this.watches) {
      w.o.onResync?.(this.sm.list(w.prefix), this.sm.revision);
      w.revision = this.sm.revision;
    }
  }

  failWatch(message: string): void {
    this.member = null;
    for (const w of this.watches) w.o.onError?.(new Error(message));
  }
}

function fakeSync(fake: FakeClient) {
  const sync = new NoteSync({ client: fake as unknown as ClusterClient, backoff: { minMs: 1, maxMs: 5 }, catchUpTimeoutMs: 2000 });
  const states: string[] = [];
  sync.actor.subscribe((snap) => {
    if (states.at(-1) !== snap.value) states.push(snap.value as string);
  });
  return { sync, states };
}

test('fake: a failed load backs off and retries; events, resync and watch errors move through the chart', async (t) => {
  const fake = new FakeClient();
  fake.failLists = 2;
  const { sync, states } = fakeSync(fake);
  t.teardown(() => sync.close());
  const changes: NoteChange[] = [];
  sync.onChange((c) => changes.push(c));
  sync.start();
  await sync.ready(5000);
  t.deepEqual(states, ['loading', 'backoff', 'loading', 'backoff', 'loading', 'live']);
  t.is(sync.status().lastError, 'no leader reachable (fake)');

  const created = await sync.createNote({ path: '/a/x', paragraphs: [{ text: 'one' }] });
  t.is(sync.note(created.note!.id)?.paragraphs[0]?.text, 'one', 'read your write');
  t.deepEqual(changes.map((c) => c.type), ['reset', 'note']);

  // Pushes get lost while the state moves on; the compacted watch re-lists and the notebook is replaced.
  fake.muted = true;
  await sync.insertParagraph(created.note!.id, { text: 'two' }, { wait: false });
  await sync.createNote({ path: '/b/y' }, { wait: false });
  t.is(sync.notes().length, 1, 'nothing arrived');
  fake.muted = false;
  fake.resync();
  t.deepEqual(sync.notes().map((n) => n.path), ['/a/x', '/b/y']);
  t.deepEqual(sync.note(created.note!.id)!.paragraphs.map((p) => p.text), ['one', 'two']);
  t.is(sync.status().resyncs, 1);
  t.true(states.includes('resyncing'));
  t.is(changes.at(-1)!.type, 'reset');

  fake.failWatch('member n1 went away');
  t.is(sync.state, 'reconnecting');
  fake.member = 'n2';
  await eventually('back to live once the watch has a member', async () => sync.state === 'live', 2000, 10);
  t.is(sync.status().watchErrors, 1);

  await sync.close();
  t.is(sync.state, 'stopped');
  await t.throwsAsync(sync.whenRevision(sync.revision + 1), { message: /stopped/ });
});

test('fake: operations validate locally, map refusals to NoteError kinds, and values written around the reducer are ignored', async (t) => {
  const fake = new FakeClient();
  const { sync } = fakeSync(fake);
  t.teardown(() => sync.close());
  sync.start();
  await sync.ready(2000);
  const before = fake.sm.revision;
  const invalid = await t.throwsAsync(sync.createNote({ path: 'relative' }));
  t.true(invalid instanceof NoteError && invalid.kind === 'invalid', String(invalid));
  t.is(fake.sm.revision, before, 'an invalid action never reaches the log');
  const n = (await sync.createNote({ path: '/n' })).note!;
  t.is((await t.throwsAsync(sync.createNote({ path: '/n' })) as NoteError).kind, 'exists');
  t.is((await t.throwsAsync(sync.deleteNote('NOSUCH')) as NoteError).kind, 'notFound');
  t.is((await t.throwsAsync(sync.restoreNote(n.id)) as NoteError).kind, 'conflict');
  t.is((await t.throwsAsync(sync.renameFolder('/nowhere', '/x')) as NoteError).kind, 'notFound');
  t.deepEqual((await sync.emptyTrash()).notes, [], 'an empty trash is not an error');

  // A raw put under notes/ that is not a note: every sync ignores it the same way.
  const raw = await fake.write({ op: 'put', key: noteKey('JUNK'), value: { hello: 'world' } });
  await sync.whenRevision(raw.ok ? raw.revision : 0);
  t.is(sync.note('JUNK'), undefined);
  t.is(sync.status().ignoredValues, 1);
  const timeout = await t.throwsAsync(sync.whenRevision(fake.sm.revision + 5, 50));
  t.regex(timeout!.message, /did not reach revision/);
});

test('the note-sync chart runs alone (pure): load, live, reconnect, resync, stop', (t) => {
  const actor = createActor(noteSyncMachine, { input: { nextDelayMs: (n) => n * 10 } }).start();
  const seen = [actor.getSnapshot().value];
  const send = (e: Parameters<typeof actor.send>[0]) => {
    actor.send(e);
    seen.push(actor.getSnapshot().value);
  };
  send({ type: 'LOAD_FAILED', error: 'x' });
  t.is(actor.getSnapshot().context.delayMs, 10);
  send({ type: 'RETRY_DUE' });
  send({ type: 'LOADED', revision: 5 });
  send({ type: 'EVENT', revision: 7 });
  send({ type: 'WATCH_ERROR', error: 'gone' });
  send({ type: 'EVENT', revision: 8 });
  send({ type: 'RESYNC_STARTED' });
  send({ type: 'RESYNCED', revision: 6 });
  send({ type: 'STOP' });
  t.deepEqual(seen, ['loading', 'backoff', 'loading', 'live', 'live', 'reconnecting', 'live', 'resyncing', 'live', 'stopped']);
  t.like(actor.getSnapshot().context, { revision: 6, resyncs: 1, watchErrors: 1, loadAttempts: 1, delayMs: 0 });
});
