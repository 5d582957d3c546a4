/** The replicated notebook reducer: every operation, validation, versions, permissions, determinism. */
import test from 'ava';
import fc from 'fast-check';
import { EntryType, type Entry } from '../src/raft/types.ts';
import { MetadataStateMachine, encodeMetaCommand, registerReducer, type MetaCommand, type MetaResult } from '../src/sm/metadata.ts';
import {
  fromZeppelinJson, hasPermission, noteKey, noteProblems, notebookHash, parseRefusal, rolesKey, folders,
  type Note, type UserRoles,
} from '../src/notebook/model.ts';
import { NOTEBOOK_REDUCER, NOTE_ACTION_TYPES, actionProblem, notebookReducer, type NotebookAction } from '../src/notebook/reducer.ts';

registerReducer(NOTEBOOK_REDUCER, notebookReducer);

const reduce = (current: unknown, action: unknown, key = noteKey('N1')) => notebookReducer(current, action, { key });

function value(out: ReturnType<typeof notebookReducer>): Note {
  if (!('value' in out)) throw new Error(`expected a value, got ${JSON.stringify(out)}`);
  return out.value as Note;
}
function refused(out: ReturnType<typeof notebookReducer>) {
  if (!('error' in out)) throw new Error(`expected a refusal, got ${JSON.stringify(out)}`);
  const r = parseRefusal(out.error);
  if (!r) throw new Error(`refusal without a kind: ${out.error}`);
  return r;
}

/** A note as stored: frozen, like the metadata center hands it to the reducer. */
function freezeDeep<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) freezeDeep(x);
    Object.freeze(v);
  }
  return v;
}

const base = (): Note => freezeDeep(value(reduce(undefined, {
  type: 'createNote',
  note: { id: 'N1', path: '/team/a', paragraphs: [{ id: 'p1', text: '%sh echo 1' }, { id: 'p2', text: 'two', title: 'T' }, { id: 'p3', text: '' }] },
})));

/** A notebook in a real metadata state machine, for batches (multi-note operations). */
class Book {
  readonly sm = new MetadataStateMachine();
  private index = 0;
  run(cmd: MetaCommand): MetaResult {
    const e: Entry = { index: ++this.index, term: 1, type: EntryType.Command, data: encodeMetaCommand(cmd) };
    return this.sm.apply(e);
  }
  act(key: string, action: NotebookAction): MetaResult {
    return this.run({ op: 'reduce', reducer: NOTEBOOK_REDUCER, key, action });
  }
  note(id: string): Note | undefined {
    return this.sm.get(noteKey(id))?.value as Note | undefined;
  }
  notes(): Note[] {
    return this.sm.list('notes/').filter((kv) => !kv.key.startsWith('notes/@')).map((kv) => kv.value as Note);
  }
  /** What NoteSync does for a folder operation: one reduce per selected note, each pinned to its revision. */
  batch(select: (n: Note) => boolean, action: NotebookAction): MetaResult {
    const ops: MetaCommand[] = this.sm.list('notes/').filter((kv) => !kv.key.startsWith('notes/@') && select(kv.value as Note))
      .map((kv) => ({ op: 'reduce', reducer: NOTEBOOK_REDUCER, key: kv.key, action, expectedRevision: kv.modRevision }));
    return this.run({ op: 'batch', ops });
  }
  hash(): string {
    const roles = this.sm.list('notes/@roles/').map((kv) => kv.value as UserRoles);
    return notebookHash(this.notes(), roles);
  }
}

const create = (id: string, path: string, extra: object = {}): NotebookAction => ({ type: 'createNote', note: { id, path, ...extra } });

// ---- notes ------------------------------------------------------------------------------------------

test('createNote fills defaults, sorts permissions, makes the creator owner, and refuses a second create', (t) => {
  const n = value(reduce(undefined, {
    type: 'createNote', by: { user: 'ann', roles: [] },
    note: { id: 'N1', path: '/a/b', config: { cron: '' }, paragraphs: [{ id: 'p1' }], permissions: { readers: ['zed', 'bob', 'bob'] } },
  }));
  t.deepEqual(n, {
    id: 'N1', path: '/a/b', config: { cron: '' }, paragraphs: [{ id: 'p1', text: '', status: 'READY' }],
    permissions: { owners: ['ann'], writers: [], runners: [], readers: ['bob', 'zed'] }, trashed: false, version: 1,
  });
  t.deepEqual(noteProblems(n), []);
  t.is(refused(reduce(freezeDeep(n), create('N1', '/x'))).kind, 'exists');
  t.regex(refused(reduce(undefined, create('N2', '/x'))).text, /note.id N2 does not match the key's note N1/);
});

test('importNote takes Zeppelin JSON: running paragraphs come back ABORT, bad or duplicate ids are replaced', (t) => {
  let next = 0;
  const imported = fromZeppelinJson({
    name: 'Imported', config: { looknfeel: 'default' }, angularObjects: {},
    paragraphs: [
      { id: '20200101-000000_1', text: '%md hi', status: 'FINISHED', results: { code: 'SUCCESS', msg: [{ type: 'HTML', data: '<p>hi</p>' }] } },
      { id: '20200101-000000_1', text: 'dup', status: 'RUNNING' },
      { id: 'bad id!', text: 5, status: 'WHATEVER', results: { nope: 1 } },
    ],
  }, { id: 'N1', newParagraphId: () => `gen${++next}` });
  const n = value(reduce(undefined, { type: 'importNote', note: imported }));
  t.is(n.path, '/Imported');
  t.deepEqual(n.paragraphs.map((p) => [p.id, p.status, p.text]), [['20200101-000000_1', 'FINISHED', '%md hi'], ['gen1', 'ABORT', 'dup'], ['gen2', 'READY', '']]);
  t.deepEqual(n.paragraphs[0]!.results, { code: 'SUCCESS', msg: [{ type: 'HTML', data: '<p>hi</p>' }] });
  t.false('results' in n.paragraphs[2]!);
  t.throws(() => fromZeppelinJson([1], { id: 'N1', newParagraphId: () => 'x' }), { message: /must be a JSON object/ });
});

test('cloneNote creates a separate note; deleteNote removes it; other ops on a missing note are notFound', (t) => {
  const src = base();
  const clone = value(reduce(undefined, { type: 'cloneNote', sourceId: 'N1', note: { id: 'N2', path: '/team/a copy', paragraphs: src.paragraphs.map((p, i) => ({ ...p, id: `c${i}` })) } }, noteKey('N2')));
  t.deepEqual(clone.paragraphs.map((p) => p.text), src.paragraphs.map((p) => p.text));
  t.deepEqual(reduce(src, { type: 'deleteNote' }), { delete: true });
  for (const action of [{ type: 'deleteNote' }, { type: 'renameNote', path: '/x' }, { type: 'runParagraph', paragraphId: 'p1' }]) {
    t.is(refused(reduce(undefined, action)).kind, 'notFound', action.type);
  }
});

test('updateNote renames within the folder and replaces config; renameNote moves anywhere; trash and restore toggle', (t) => {
  const n = base();
  const u = value(reduce(n, { type: 'updateNote', name: 'b', config: { personalizedMode: 'false' } }));
  t.is(u.path, '/team/b');
  t.deepEqual(u.config, { personalizedMode: 'false' });
  t.is(u.version, 2);
  const top = value(reduce(freezeDeep(value(reduce(n, { type: 'renameNote', path: '/top' }))), { type: 'updateNote', name: 'renamed' }));
  t.is(top.path, '/renamed');
  const trashed = freezeDeep(value(reduce(n, { type: 'moveNoteToTrash' })));
  t.true(trashed.trashed);
  t.is(refused(reduce(trashed, { type: 'moveNoteToTrash' })).kind, 'conflict');
  t.false(value(reduce(trashed, { type: 'restoreNote' })).trashed);
  t.is(refused(reduce(n, { type: 'restoreNote' })).kind, 'conflict');
  t.regex(refused(reduce(n, { type: 'updateNote' })).text, /needs at least one of name, config/);
  t.regex(refused(reduce(n, { type: 'updateNote', name: 'a/b' })).text, /name must be a non-empty note name without '\/'/);
});

// ---- paragraphs -------------------------------------------------------------------------------------

test('paragraphs: insert (index clamps to the end), update (title null removes), move, remove', (t) => {
  const n = base();
  const ins = freezeDeep(value(reduce(n, { type: 'insertParagraph', index: 1, paragraph: { id: 'new', text: 'x', config: { editorHide: true } } })));
  t.deepEqual(ins.paragraphs.map((p) => p.id), ['p1', 'new', 'p2', 'p3']);
  t.deepEqual(value(reduce(ins, { type: 'insertParagraph', index: 99, paragraph: { id: 'end' } })).paragraphs.map((p) => p.id), ['p1', 'new', 'p2', 'p3', 'end']);
  t.is(refused(reduce(ins, { type: 'insertParagraph', index: 0, paragraph: { id: 'p1' } })).kind, 'exists');
  const upd = value(reduce(n, { type: 'updateParagraph', paragraphId: 'p2', text: 'changed', title: null }));
  t.deepEqual(upd.paragraphs[1], { id: 'p2', text: 'changed', status: 'READY' });
  t.is(value(reduce(n, { type: 'updateParagraph', paragraphId: 'p1', title: 'new title' })).paragraphs[0]!.title, 'new title');
  t.deepEqual(value(reduce(n, { type: 'moveParagraph', paragraphId: 'p1', index: 2 })).paragraphs.map((p) => p.id), ['p2', 'p3', 'p1']);
  t.deepEqual(value(reduce(n, { type: 'moveParagraph', paragraphId: 'p3', index: 0 })).paragraphs.map((p) => p.id), ['p3', 'p1', 'p2']);
  t.deepEqual(value(reduce(n, { type: 'removeParagraph', paragraphId: 'p2' })).paragraphs.map((p) => p.id), ['p1', 'p3']);
  t.is(refused(reduce(n, { type: 'removeParagraph', paragraphId: 'nope' })).kind, 'notFound');
  t.is(refused(reduce(n, { type: 'updateParagraph', paragraphId: 'nope', text: '' })).kind, 'notFound');
});

test('run: READY -> PENDING -> RUNNING -> FINISHED with results; illegal transitions refused; clear output', (t) => {
  let n = base();
  const step = (action: object) => (n = freezeDeep(value(reduce(n, action))));
  step({ type: 'runParagraph', paragraphId: 'p1' });
  t.is(n.paragraphs[0]!.status, 'PENDING');
  t.regex(refused(reduce(n, { type: 'runParagraph', paragraphId: 'p1' })).text, /already running/);
  t.is(refused(reduce(n, { type: 'setParagraphStatus', paragraphId: 'p1', status: 'FINISHED' })).kind, 'conflict');
  step({ type: 'setParagraphStatus', paragraphId: 'p1', status: 'RUNNING' });
  t.is(refused(reduce(n, { type: 'setParagraphStatus', paragraphId: 'p1', status: 'RUNNING' })).kind, 'conflict');
  const results = { code: 'SUCCESS', msg: [{ type: 'TEXT', data: '1\n' }] };
  step({ type: 'setParagraphStatus', paragraphId: 'p1', status: 'FINISHED', results });
  t.deepEqual(n.paragraphs[0], { id: 'p1', text: '%sh echo 1', status: 'FINISHED', results });
  t.is(n.version, 4);
  step({ type: 'runParagraph', paragraphId: 'p1' });
  t.is(refused(reduce(n, { type: 'setParagraphStatus', paragraphId: 'p1', status: 'RUNNING', results })).kind, 'invalid');
  step({ type: 'setParagraphStatus', paragraphId: 'p1', status: 'ABORT' });
  t.deepEqual(n.paragraphs[0]!.results, results, 'an aborted run keeps the previous output');
  step({ type: 'clearParagraphOutput', paragraphId: 'p1' });
  t.false('results' in n.paragraphs[0]!);
  step({ type: 'runParagraph', paragraphId: 'p2' });
  step({ type: 'setParagraphStatus', paragraphId: 'p2', status: 'RUNNING' });
  step({ type: 'setParagraphStatus', paragraphId: 'p2', status: 'ERROR', results: { code: 'ERROR', msg: [{ type: 'TEXT', data: 'boom' }] } });
  step({ type: 'clearAllOutput' });
  t.true(n.paragraphs.every((p) => !('results' in p)));
  t.deepEqual(noteProblems(n), []);
});

// ---- permissions and roles ----------------------------------------------------------------------

test('permissions: setPermissions replaces given lists; with `by` the reducer enforces owner/writer/runner levels, roles included', (t) => {
  const n = freezeDeep(value(reduce(base(), { type: 'setPermissions', owners: ['ann'], writers: ['devs'], runners: ['bob'] })));
  t.deepEqual(n.permissions, { owners: ['ann'], writers: ['devs'], runners: ['bob'], readers: [] });
  const bob = { user: 'bob', roles: [] };
  const carl = { user: 'carl', roles: ['devs'] };
  const eve = { user: 'eve', roles: ['guests'] };
  t.true(hasPermission(n, eve, 'readers'), 'empty readers: everyone reads');
  t.true(hasPermission(n, carl, 'runners'), 'writers include runners');
  t.false(hasPermission(n, bob, 'writers'));
  t.is(value(reduce(n, { type: 'runParagraph', paragraphId: 'p1', by: bob })).paragraphs[0]!.status, 'PENDING');
  const denied = refused(reduce(n, { type: 'updateParagraph', paragraphId: 'p1', text: 'x', by: bob }));
  t.is(denied.kind, 'forbidden');
  t.regex(denied.text, /bob is not among the writers of note N1/);
  t.is(value(reduce(n, { type: 'updateParagraph', paragraphId: 'p1', text: 'x', by: carl })).paragraphs[0]!.text, 'x');
  t.is(refused(reduce(n, { type: 'deleteNote', by: carl })).kind, 'forbidden');
  t.is(refused(reduce(n, { type: 'setPermissions', readers: ['x'], by: eve })).kind, 'forbidden');
  t.deepEqual(reduce(n, { type: 'deleteNote', by: { user: 'ann', roles: [] } }), { delete: true });
});

test('roles: setRoles on notes/@roles/<user>; an empty list deletes; keys and actions must match', (t) => {
  t.deepEqual(reduce(undefined, { type: 'setRoles', user: 'ann', roles: ['b', 'a', 'a'] }, rolesKey('ann')), { value: { user: 'ann', roles: ['a', 'b'] } });
  t.deepEqual(reduce({ user: 'ann', roles: ['a'] }, { type: 'setRoles', user: 'ann', roles: [] }, rolesKey('ann')), { delete: true });
  t.regex(refused(reduce(undefined, { type: 'setRoles', user: 'bob', roles: [] }, rolesKey('ann'))).text, /sent to the key of "ann"/);
  t.regex(refused(reduce(undefined, { type: 'setRoles', user: 'ann', roles: [] })).text, /setRoles goes to a roles key/);
  t.regex(refused(reduce(undefined, create('N1', '/x'), rolesKey('ann'))).text, /only takes setRoles/);
  t.regex(refused(reduce(undefined, create('N1', '/x'), 'other/N1')).text, /not a notebook key/);
});

// ---- versions -------------------------------------------------------------------------------------

test('every operation bumps the version by one; expectedVersion refuses stale edits with a clear error', (t) => {
  const n = base();
  t.is(n.version, 1);
  const u = freezeDeep(value(reduce(n, { type: 'updateParagraph', paragraphId: 'p1', text: 'a', expectedVersion: 1 })));
  t.is(u.version, 2);
  const stale = refused(reduce(u, { type: 'updateParagraph', paragraphId: 'p1', text: 'b', expectedVersion: 1 }));
  t.is(stale.kind, 'conflict');
  t.regex(stale.text, /note N1 is at version 2, the edit expected version 1: reload and retry/);
  t.is(value(reduce(u, { type: 'updateParagraph', paragraphId: 'p1', text: 'b', expectedVersion: 2 })).version, 3);
  t.is(value(reduce(undefined, { ...create('N1', '/x'), expectedVersion: 0 })).version, 1);
  t.is(refused(reduce(n, { ...create('N1', '/x'), expectedVersion: 0 })).kind, 'conflict');
});

// ---- validation -------------------------------------------------------------------------------------

test('bad actions are refused as invalid with a message naming the problem, and the note is untouched', (t) => {
  const n = base();
  const bad: [unknown, RegExp][] = [
    [null, /action must be an object/],
    [{ type: 'explode' }, /unknown action type "explode"/],
    [{ type: 'renameNote' }, /renameNote needs path/],
    [{ type: 'renameNote', path: 'no-slash' }, /path must start with '\/'/],
    [{ type: 'renameNote', path: '/a//b' }, /empty, '.', '..' or space-padded segment/],
    [{ type: 'renameNote', path: '/a/../b' }, /empty, '.', '..'/],
    [{ type: 'renameNote', path: '/a/', extra: 1 }, /path|unknown field/],
    [{ type: 'renameNote', path: '/a', extra: 1 }, /renameNote has unknown field "extra"/],
    [{ type: 'insertParagraph', index: -1, paragraph: { id: 'x' } }, /index must be a non-negative integer/],
    [{ type: 'insertParagraph', index: 0, paragraph: { id: 'x', text: 1 } }, /text must be a string/],
    [{ type: 'insertParagraph', index: 0, paragraph: { id: 'x', color: 'red' } }, /unknown field "color"/],
    [{ type: 'insertParagraph', index: 0, paragraph: { id: 'has space' } }, /paragraph id must match/],
    [{ type: 'insertParagraph', index: 0, paragraph: { id: 'x', config: [] } }, /config must be an object/],
    [{ type: 'setParagraphStatus', paragraphId: 'p1', status: 'DONE' }, /status must be one of/],
    [{ type: 'setParagraphStatus', paragraphId: 'p1', status: 'FINISHED', results: { code: 'OK', msg: [] } }, /results.code must be one of/],
    [{ type: 'setPermissions', owners: 'ann' }, /owners must be a list of names/],
    [{ type: 'setPermissions', owners: [' ann'] }, /owners entry must be a non-empty name/],
    [{ type: 'setPermissions' }, /needs at least one of owners, writers, runners, readers/],
    [{ type: 'deleteNote', expectedVersion: 1.5 }, /expectedVersion must be a non-negative integer/],
    [{ type: 'deleteNote', by: { user: 'ann' } }, /by must be \{ user, roles \}/],
    [{ type: 'renameFolder', from: '/a', to: '/a' }, /same folder/],
    [{ type: 'createNote', note: { id: 'N1', path: '/x', paragraphs: [{ id: 'a' }, { id: 'a' }] } }, /duplicate paragraph id "a"/],
    [{ type: 'createNote', note: { id: 'N1', path: '/x', version: 7 } }, /note has unknown field "version"/],
  ];
  for (const [action, message] of bad) {
    const out = refused(reduce(n, action));
    t.is(out.kind, 'invalid', JSON.stringify(action));
    t.regex(out.text, message, JSON.stringify(action));
  }
  t.is(actionProblem({ type: 'updateParagraph', paragraphId: 'p1', text: 'ok' }), null);
  t.deepEqual(noteProblems(n), [], 'frozen input, unchanged');
  t.regex(refused(reduce({ id: 'N1', path: '/x' }, { type: 'deleteNote' })).text, /not a valid note/);
});

// ---- multi-note operations through batches -------------------------------------------------------

test('folder operations are atomic batches of per-note actions; a batch from a stale view is refused whole', (t) => {
  const b = new Book();
  for (const [id, path] of [['A', '/f/a'], ['B', '/f/sub/b'], ['C', '/fx/c'], ['D', '/g/d']] as const) t.true(b.act(noteKey(id), create(id, path)).ok);
  t.deepEqual(folders(b.notes()), ['/f', '/f/sub', '/fx', '/g']);

  t.true(b.batch((n) => n.path.startsWith('/f/'), { type: 'renameFolder', from: '/f', to: '/h' }).ok);
  t.deepEqual(b.notes().map((n) => n.path).sort(), ['/fx/c', '/g/d', '/h/a', '/h/sub/b']);

  // A batch naming a note that is not in the folder (the caller's view was stale) changes nothing.
  const before = b.hash();
  const stale = b.run({ op: 'batch', ops: ['A', 'D'].map((id): MetaCommand => ({ op: 'reduce', reducer: NOTEBOOK_REDUCER, key: noteKey(id), action: { type: 'moveFolderToTrash', folder: '/h' } })) });
  t.false(stale.ok);
  t.is(!stale.ok && parseRefusal(stale.message)?.kind, 'conflict');
  t.is(b.hash(), before);

  t.true(b.batch((n) => n.path.startsWith('/h/'), { type: 'moveFolderToTrash', folder: '/h' }).ok);
  t.deepEqual(b.notes().filter((n) => n.trashed).map((n) => n.id).sort(), ['A', 'B']);
  t.true(b.batch((n) => n.trashed && n.path.startsWith('/h/sub/'), { type: 'restoreFolder', folder: '/h/sub' }).ok);
  t.false(b.note('B')!.trashed);
  t.true(b.batch((n) => n.trashed, { type: 'restoreAll' }).ok);
  t.true(b.notes().every((n) => !n.trashed));
  t.true(b.act(noteKey('C'), { type: 'moveNoteToTrash' }).ok);
  t.true(b.act(noteKey('D'), { type: 'moveNoteToTrash' }).ok);
  t.true(b.batch((n) => n.trashed, { type: 'emptyTrash' }).ok);
  t.deepEqual(b.notes().map((n) => n.id).sort(), ['A', 'B']);
  t.true(b.batch((n) => n.path.startsWith('/h/'), { type: 'removeFolder', folder: '/h' }).ok);
  t.deepEqual(b.notes(), []);
  // A note that is not in the trash cannot be emptied with it.
  t.true(b.act(noteKey('E'), create('E', '/e')).ok);
  t.is(parseRefusal((b.act(noteKey('E'), { type: 'emptyTrash' }) as { message: string }).message)?.kind, 'conflict');
});

// ---- determinism and the model invariant -------------------------------------------------------------

const NOTE_IDS = ['N1', 'N2'];
const PIDS = ['p1', 'p2', 'p3', 'p4'];
/** Mostly valid values, sometimes a bad one, so sequences both change state and exercise refusals. */
const mostly = <T, U>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<U>) => fc.oneof({ arbitrary: good, weight: 12 }, { arbitrary: bad, weight: 1 });
const rarely = <T>(a: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 6 }, { arbitrary: a, weight: 1 });

const arbCreate = fc.record({
  type: fc.constantFrom('createNote', 'importNote'),
  id: fc.constantFrom(...NOTE_IDS),
  path: mostly(fc.constantFrom('/a/n', '/a/b/n', '/a/b/c/n', '/z'), fc.constant('bad')),
  paragraphs: fc.subarray(PIDS),
  by: rarely(fc.constantFrom('ann', 'bob')),
}).map(({ type, id, path, paragraphs, by }) => ({
  key: noteKey(id),
  action: { type, note: { id, path, paragraphs: paragraphs.map((p) => ({ id: p })) }, ...(by ? { by: { user: by, roles: [] } } : {}) },
}));

const arbEdit = fc.record({
  id: fc.constantFrom(...NOTE_IDS),
  type: fc.constantFrom(...NOTE_ACTION_TYPES.filter((x) => !['createNote', 'importNote', 'cloneNote'].includes(x))),
  pid: mostly(fc.constantFrom(...PIDS), fc.constant('bad id')),
  index: mostly(fc.integer({ min: 0, max: 6 }), fc.constant(-1)),
  text: fc.string({ maxLength: 5 }),
  title: mostly(fc.constantFrom('t', null), fc.constant(3)),
  path: mostly(fc.constantFrom('/a/m', '/a/b/m', '/q/r'), fc.constantFrom('/', 'x')),
  folder: fc.constantFrom('/a', '/a/b', '/q'),
  status: mostly(fc.constantFrom('RUNNING', 'FINISHED', 'ERROR', 'ABORT', 'PENDING', 'READY'), fc.constant('NOPE')),
  users: fc.subarray(['ann', 'bob', 'devs']),
  expectedVersion: rarely(fc.integer({ min: 0, max: 6 })),
  by: rarely(fc.constantFrom('ann', 'bob', 'carl')),
  name: mostly(fc.constantFrom('n', 'm'), fc.constantFrom('x/y', '')),
}).map((r) => {
  const fields: Record<string, unknown> = {
    paragraphId: r.pid, index: r.index, text: r.text, title: r.title, path: r.path, folder: r.folder, from: r.folder,
    to: r.folder === '/q' ? '/a' : '/q', status: r.status, owners: r.users, readers: r.users, name: r.name,
    paragraph: { id: r.pid, text: r.text }, results: { code: 'SUCCESS', msg: [{ type: 'TEXT', data: r.text }] },
  };
  const wanted: Record<string, string[]> = {
    updateNote: ['name'], renameNote: ['path'], renameFolder: ['from', 'to'], removeFolder: ['folder'], moveFolderToTrash: ['folder'],
    restoreFolder: ['folder'], insertParagraph: ['index', 'paragraph'], updateParagraph: ['paragraphId', 'text', 'title'],
    moveParagraph: ['paragraphId', 'index'], runParagraph: ['paragraphId'], setParagraphStatus: ['paragraphId', 'status', 'results'],
    clearParagraphOutput: ['paragraphId'], removeParagraph: ['paragraphId'], setPermissions: ['owners', 'readers'],
  };
  const action: Record<string, unknown> = { type: r.type };
  for (const f of wanted[r.type] ?? []) action[f] = fields[f];
  if (r.type === 'setParagraphStatus' && !['FINISHED', 'ERROR', 'ABORT'].includes(r.status)) delete action.results;
  if (r.expectedVersion !== undefined) action.expectedVersion = r.expectedVersion;
  if (r.by) action.by = { user: r.by, roles: r.by === 'carl' ? ['devs'] : [] };
  return { key: noteKey(r.id), action };
});

const arbRoles = fc.record({ user: fc.constantFrom('ann', 'bob'), roles: fc.subarray(['devs', 'ops']) })
  .map(({ user, roles }) => ({ key: rolesKey(user), action: { type: 'setRoles', user, roles } }));

const arbAction: fc.Arbitrary<{ key: string; action: unknown }> = fc.oneof(
  { arbitrary: arbCreate, weight: 2 },
  { arbitrary: arbEdit, weight: 10 },
  { arbitrary: arbRoles, weight: 1 },
);

test('property: random action sequences keep every note valid, bump versions by exactly one, and refuse only with a kind', (t) => {
  const applied = new Map<string, number>();
  fc.assert(
    fc.property(fc.array(arbAction, { minLength: 5, maxLength: 60, size: 'max' }), (steps) => {
      const kv = new Map<string, unknown>();
      for (const { key, action } of steps) {
        const cur = kv.get(key);
        const out = notebookReducer(cur, action, { key });
        if ('error' in out) {
          if (!parseRefusal(out.error)) return false;
          continue;
        }
        const type = (action as { type: string }).type;
        applied.set(type, (applied.get(type) ?? 0) + 1);
        if ('delete' in out) {
          kv.delete(key);
          continue;
        }
        if (key.startsWith('notes/@roles/')) {
          kv.set(key, freezeDeep(out.value));
          continue;
        }
        const note = out.value as Note;
        const problems = noteProblems(note);
        if (problems.length) throw new Error(`invalid note after ${JSON.stringify(action)}: ${problems.join('; ')}`);
        const expected = cur ? (cur as Note).version + 1 : 1;
        if (note.version !== expected) throw new Error(`version ${note.version}, expected ${expected} after ${JSON.stringify(action)}`);
        kv.set(key, freezeDeep(note));
      }
      return true;
    }),
    { numRuns: 300 },
  );
  // The generator must reach real state changes of every kind, or the property says little.
  t.log(Object.fromEntries(applied));
  for (const type of [...NOTE_ACTION_TYPES.filter((x) => x !== 'cloneNote'), 'setRoles']) t.true((applied.get(type) ?? 0) > 0, `${type} never applied`);
});

test('determinism: replaying the same action log on two metadata state machines gives identical notebooks and digests', (t) => {
  fc.assert(
    fc.property(fc.array(arbAction, { maxLength: 50, size: 'max' }), (steps) => {
      const [x, y] = [new Book(), new Book()];
      const rx = steps.map(({ key, action }) => x.run({ op: 'reduce', reducer: NOTEBOOK_REDUCER, key, action: action as never }));
      const ry = steps.map(({ key, action }) => y.run({ op: 'reduce', reducer: NOTEBOOK_REDUCER, key, action: action as never }));
      return JSON.stringify(rx) === JSON.stringify(ry) && x.sm.digest() === y.sm.digest() && x.hash() === y.hash();
    }),
    { numRuns: 100 },
  );
  t.pass();
});
