/**
 * The replicated notebook reducer ("notebook"): every note operation Zeppelin's NotebookServer
 * broadcast in cluster mode, as a pure function (current value of one key, action) -> outcome.
 * The metadata center runs it in log order on every member, so concurrent edits resolve by log
 * order and every member ends with the same notes.
 *
 * One key per call. Operations over many notes (folder rename/remove/trash/restore, restore all,
 * empty trash) are one batch of per-note actions built by the caller; each per-note action checks
 * that its note still qualifies (e.g. still lies in the folder), so a batch built from a stale view
 * is refused as a whole and the caller rebuilds it (see actors/note-sync.ts).
 *
 * Only types come from the metadata module: it imports this file to register the reducer.
 */
import type { MetaValue, ReducerOutcome } from '../sm/metadata.ts';
import {
  entitiesProblem, entityProblem, idProblem, isInFolder, isPlainObject, jsonObjectProblem, movedPath, noteProblems, normalizeEntities,
  parentFolder, parseNotebookKey, pathProblem, paragraphProblem, refusal, resultsProblem, rolesProblems, hasPermission,
  MAX_NAME_CHARS, MAX_PARAGRAPHS, PARAGRAPH_STATUSES, PERMISSION_KINDS,
  type JsonObject, type Note, type NoteErrorKind, type Paragraph, type ParagraphResults, type ParagraphStatus, type PermissionKind,
  type Permissions, type Principal, type UserRoles,
} from './model.ts';

export const NOTEBOOK_REDUCER = 'notebook';

export interface ParagraphInit {
  id: string;
  text?: string;
  title?: string;
  config?: JsonObject;
  results?: ParagraphResults;
  status?: ParagraphStatus;
}

export interface NoteInit {
  id: string;
  path: string;
  config?: JsonObject;
  paragraphs?: ParagraphInit[];
  permissions?: Partial<Permissions>;
}

/** Every note action may carry `expectedVersion` (refused as stale otherwise) and `by` (permissions are then checked). */
export type NoteAction = { expectedVersion?: number; by?: Principal } & (
  | { type: 'createNote'; note: NoteInit }
  | { type: 'importNote'; note: NoteInit }
  | { type: 'cloneNote'; sourceId: string; note: NoteInit }
  | { type: 'deleteNote' }
  | { type: 'updateNote'; name?: string; config?: JsonObject }
  | { type: 'renameNote'; path: string }
  | { type: 'moveNoteToTrash' }
  | { type: 'restoreNote' }
  | { type: 'renameFolder'; from: string; to: string }
  | { type: 'removeFolder'; folder: string }
  | { type: 'moveFolderToTrash'; folder: string }
  | { type: 'restoreFolder'; folder: string }
  | { type: 'restoreAll' }
  | { type: 'emptyTrash' }
  | { type: 'insertParagraph'; index: number; paragraph: ParagraphInit }
  /** title null removes the title. */
  | { type: 'updateParagraph'; paragraphId: string; text?: string; title?: string | null; config?: JsonObject }
  | { type: 'moveParagraph'; paragraphId: string; index: number }
  | { type: 'runParagraph'; paragraphId: string }
  | { type: 'setParagraphStatus'; paragraphId: string; status: ParagraphStatus; results?: ParagraphResults }
  | { type: 'clearParagraphOutput'; paragraphId: string }
  | { type: 'clearAllOutput' }
  | { type: 'removeParagraph'; paragraphId: string }
  | { type: 'setPermissions'; owners?: string[]; writers?: string[]; runners?: string[]; readers?: string[] }
);

/** On a roles key (`notes/@roles/<user>`); empty roles remove the key. */
export type RolesAction = { type: 'setRoles'; user: string; roles: string[] };

export type NotebookAction = NoteAction | RolesAction;
export type NoteActionType = NoteAction['type'];

// ---- action validation -----------------------------------------------------------------------------

type Check = (v: unknown) => string | null;

const str = (what: string): Check => (v) => (typeof v === 'string' ? null : `${what} must be a string`);
const index: Check = (v) => (Number.isSafeInteger(v) && (v as number) >= 0 ? null : 'index must be a non-negative integer');
const pid: Check = (v) => idProblem(v, 'paragraphId');
const config: Check = (v) => jsonObjectProblem(v, 'config');
const name: Check = (v) =>
  typeof v !== 'string' || v === '' || v.length > MAX_NAME_CHARS || v.includes('/') || pathProblem(`/${v}`)
    ? `name must be a non-empty note name without '/' (got ${JSON.stringify(v)})`
    : null;
const status: Check = (v) => ((PARAGRAPH_STATUSES as readonly unknown[]).includes(v) ? null : `status must be one of ${PARAGRAPH_STATUSES.join(', ')}`);
const entities = (what: string): Check => (v) => entitiesProblem(v, what);

function principalProblem(v: unknown): string | null {
  if (!isPlainObject(v) || Object.keys(v).sort().join() !== 'roles,user') return 'by must be { user, roles }';
  return entityProblem(v.user, 'by.user') ?? entitiesProblem(v.roles, 'by.roles');
}

function paragraphInitProblem(v: unknown): string | null {
  // Validated in its stored form (defaults filled in), which also refuses unknown fields.
  return isPlainObject(v) ? paragraphProblem({ text: '', status: 'READY', ...v }) : 'paragraph must be an object';
}

const NOTE_INIT_FIELDS = new Set(['id', 'path', 'config', 'paragraphs', 'permissions']);

function noteInitProblem(v: unknown): string | null {
  if (!isPlainObject(v)) return 'note must be an object';
  const extra = Object.keys(v).find((k) => !NOTE_INIT_FIELDS.has(k));
  if (extra) return `note has unknown field ${JSON.stringify(extra)}`;
  const p = idProblem(v.id, 'note.id') ?? pathProblem(v.path, 'note.path') ?? ('config' in v ? config(v.config) : null);
  if (p) return p;
  if ('paragraphs' in v) {
    if (!Array.isArray(v.paragraphs)) return 'note.paragraphs must be a list';
    if (v.paragraphs.length > MAX_PARAGRAPHS) return `note has more than ${MAX_PARAGRAPHS} paragraphs`;
    const ids = new Set<unknown>();
    for (const para of v.paragraphs) {
      const q = paragraphInitProblem(para);
      if (q) return q;
      const id = (para as { id: unknown }).id;
      if (ids.has(id)) return `duplicate paragraph id ${JSON.stringify(id)}`;
      ids.add(id);
    }
  }
  if ('permissions' in v) return permissionsPatchProblem(v.permissions, 'note.permissions');
  return null;
}

function permissionsPatchProblem(v: unknown, what: string): string | null {
  if (!isPlainObject(v)) return `${what} must be an object`;
  for (const [k, list] of Object.entries(v)) {
    if (!(PERMISSION_KINDS as readonly string[]).includes(k)) return `${what} has unknown kind ${JSON.stringify(k)}`;
    const p = entitiesProblem(list, `${what}.${k}`);
    if (p) return p;
  }
  return null;
}

interface Spec {
  required: Record<string, Check>;
  optional?: Record<string, Check>;
  /** Optional fields of which at least one must be present. */
  oneOf?: boolean;
  /** Permission the principal (`by`) needs on the note; null: none (creation). */
  perm: PermissionKind | null;
}

const folder: Check = (v) => pathProblem(v, 'folder');
const SPECS: Record<NoteActionType, Spec> = {
  createNote: { required: { note: noteInitProblem }, perm: null },
  importNote: { required: { note: noteInitProblem }, perm: null },
  cloneNote: { required: { sourceId: (v) => idProblem(v, 'sourceId'), note: noteInitProblem }, perm: null },
  deleteNote: { required: {}, perm: 'owners' },
  updateNote: { required: {}, optional: { name, config }, oneOf: true, perm: 'writers' },
  renameNote: { required: { path: (v) => pathProblem(v) }, perm: 'owners' },
  moveNoteToTrash: { required: {}, perm: 'owners' },
  restoreNote: { required: {}, perm: 'owners' },
  renameFolder: { required: { from: (v) => pathProblem(v, 'from'), to: (v) => pathProblem(v, 'to') }, perm: 'owners' },
  removeFolder: { required: { folder }, perm: 'owners' },
  moveFolderToTrash: { required: { folder }, perm: 'owners' },
  restoreFolder: { required: { folder }, perm: 'owners' },
  restoreAll: { required: {}, perm: 'owners' },
  emptyTrash: { required: {}, perm: 'owners' },
  insertParagraph: { required: { index, paragraph: paragraphInitProblem }, perm: 'writers' },
  updateParagraph: {
    required: { paragraphId: pid },
    optional: { text: str('text'), title: (v) => (v === null || typeof v === 'string' ? null : 'title must be a string or null'), config },
    oneOf: true,
    perm: 'writers',
  },
  moveParagraph: { required: { paragraphId: pid, index }, perm: 'writers' },
  runParagraph: { required: { paragraphId: pid }, perm: 'runners' },
  setParagraphStatus: { required: { paragraphId: pid, status }, optional: { results: resultsProblem }, perm: 'runners' },
  clearParagraphOutput: { required: { paragraphId: pid }, perm: 'writers' },
  clearAllOutput: { required: {}, perm: 'writers' },
  removeParagraph: { required: { paragraphId: pid }, perm: 'writers' },
  setPermissions: {
    required: {},
    optional: { owners: entities('owners'), writers: entities('writers'), runners: entities('runners'), readers: entities('readers') },
    oneOf: true,
    perm: 'owners',
  },
};

const COMMON: Record<string, Check> = {
  expectedVersion: (v) => (Number.isSafeInteger(v) && (v as number) >= 0 ? null : 'expectedVersion must be a non-negative integer'),
  by: principalProblem,
};

export const NOTE_ACTION_TYPES = Object.keys(SPECS) as NoteActionType[];

/** Full validation of an action's shape (not of its fit to the current state); null when valid. */
export function actionProblem(raw: unknown): string | null {
  if (!isPlainObject(raw)) return 'action must be an object';
  if (raw.type === 'setRoles') {
    const extra = Object.keys(raw).find((k) => !['type', 'user', 'roles'].includes(k));
    return extra ? `setRoles has unknown field ${JSON.stringify(extra)}` : (entityProblem(raw.user, 'user') ?? entitiesProblem(raw.roles, 'roles'));
  }
  const spec = Object.hasOwn(SPECS, raw.type as string) ? SPECS[raw.type as NoteActionType] : undefined;
  if (!spec) return `unknown action type ${JSON.stringify(raw.type)}`;
  for (const [field, check] of Object.entries(spec.required)) {
    if (!(field in raw)) return `${raw.type} needs ${field}`;
    const p = check(raw[field]);
    if (p) return `${raw.type}: ${p}`;
  }
  let optionals = 0;
  for (const [field, v] of Object.entries(raw)) {
    if (field === 'type' || field in spec.required) continue;
    const check = spec.optional?.[field] ?? COMMON[field];
    if (!check) return `${raw.type} has unknown field ${JSON.stringify(field)}`;
    const p = check(v);
    if (p) return `${raw.type}: ${p}`;
    if (spec.optional?.[field]) optionals++;
  }
  if (spec.oneOf && optionals === 0) return `${raw.type} needs at least one of ${Object.keys(spec.optional!).join(', ')}`;
  if (raw.type === 'renameFolder' && raw.from === raw.to) return 'renameFolder: from and to are the same folder';
  return null;
}

// ---- the reducer --------------------------------------------------------------------------------

type NoteOutcome = { note: Note } | { delete: true } | { error: string };

const no = (kind: NoteErrorKind, text: string): { error: string } => ({ error: refusal(kind, text) });

/** The registered reducer: validates, dispatches by key kind, and asserts the result is a valid note. */
export function notebookReducer(current: MetaValue | undefined, action: MetaValue, ctx: { key: string }): ReducerOutcome {
  const problem = actionProblem(action);
  if (problem) return no('invalid', problem);
  const a = action as NotebookAction;
  const key = parseNotebookKey(ctx.key);
  if (!key) return no('invalid', `key ${JSON.stringify(ctx.key)} is not a notebook key (notes/<noteId> or notes/@roles/<user>)`);
  if (key.kind === 'roles') {
    if (a.type !== 'setRoles') return no('invalid', `a roles key only takes setRoles, not ${a.type}`);
    return reduceRoles(current, a, key.user);
  }
  if (a.type === 'setRoles') return no('invalid', 'setRoles goes to a roles key (notes/@roles/<user>)');
  if (current !== undefined) {
    const bad = noteProblems(current);
    if (bad.length) return no('invalid', `the value under ${ctx.key} is not a valid note: ${bad[0]}`);
  }
  const out = reduceNote(current as Note | undefined, a, key.id);
  if (!('note' in out)) return out;
  const bad = noteProblems(out.note);
  // Only a bug in this file gets here; throwing makes the metadata center refuse the entry unchanged.
  if (bad.length) throw new Error(`notebook reducer produced an invalid note ${key.id} on ${a.type}: ${bad.join('; ')}`);
  return { value: out.note };
}

function reduceRoles(current: MetaValue | undefined, a: RolesAction, user: string): ReducerOutcome {
  if (a.user !== user) return no('invalid', `setRoles for ${JSON.stringify(a.user)} sent to the key of ${JSON.stringify(user)}`);
  if (current !== undefined && rolesProblems(current, user).length) return no('invalid', `the roles value of ${user} is malformed`);
  const roles = normalizeEntities(a.roles);
  return roles.length ? { value: { user, roles } satisfies UserRoles } : { delete: true };
}

/** One note's step. `id` is the note id from the key; `cur` is valid or absent. */
export function reduceNote(cur: Note | undefined, a: NoteAction, id: string): NoteOutcome {
  const actual = cur?.version ?? 0;
  if (a.expectedVersion !== undefined && a.expectedVersion !== actual) {
    return no('conflict', `note ${id} is at version ${actual}${cur ? '' : ' (absent)'}, the edit expected version ${a.expectedVersion}: reload and retry`);
  }
  if (a.type === 'createNote' || a.type === 'importNote' || a.type === 'cloneNote') {
    if (cur) return no('exists', `note ${id} already exists`);
    return create(a.note, id, a.by);
  }
  if (!cur) return no('notFound', `note ${id} does not exist`);
  const perm = SPECS[a.type].perm;
  if (perm && a.by && !hasPermission(cur, a.by, perm)) {
    return no('forbidden', `${a.by.user} is not among the ${perm} of note ${id} (${cur.path})`);
  }
  const step = change(cur, a);
  if (!('note' in step)) return step;
  return { note: { ...step.note, version: cur.version + 1 } };
}

function create(init: NoteInit, id: string, by: Principal | undefined): NoteOutcome {
  if (init.id !== id) return no('invalid', `note.id ${init.id} does not match the key's note ${id}`);
  const p = init.permissions ?? {};
  const permissions: Permissions = {
    // The creator owns a note created with no owners (Zeppelin does the same when auth is on).
    owners: normalizeEntities(p.owners?.length ? p.owners : by ? [by.user] : []),
    writers: normalizeEntities(p.writers ?? []),
    runners: normalizeEntities(p.runners ?? []),
    readers: normalizeEntities(p.readers ?? []),
  };
  const paragraphs = (init.paragraphs ?? []).map(paragraphFrom);
  return { note: { id, path: init.path, config: init.config ?? {}, paragraphs, permissions, trashed: false, version: 1 } };
}

function paragraphFrom(p: ParagraphInit): Paragraph {
  const out: Paragraph = { id: p.id, text: p.text ?? '', status: p.status ?? 'READY' };
  if (p.title !== undefined) out.title = p.title;
  if (p.config !== undefined) out.config = p.config;
  if (p.results !== undefined) out.results = p.results;
  return out;
}

/** Which status a paragraph may move to from which (run -> PENDING is runParagraph). */
const NEXT_STATUS: Record<ParagraphStatus, readonly ParagraphStatus[]> = {
  READY: ['PENDING'],
  FINISHED: ['PENDING'],
  ERROR: ['PENDING'],
  ABORT: ['PENDING'],
  PENDING: ['RUNNING', 'ABORT', 'ERROR'],
  RUNNING: ['FINISHED', 'ERROR', 'ABORT'],
};

function change(cur: Note, a: Exclude<NoteAction, { type: 'createNote' | 'importNote' | 'cloneNote' }>): NoteOutcome {
  const id = cur.id;
  const ok = (note: Note): NoteOutcome => ({ note });
  const para = (pid: string): { i: number; p: Paragraph } | { error: string } => {
    const i = cur.paragraphs.findIndex((p) => p.id === pid);
    return i < 0 ? no('notFound', `paragraph ${pid} is not in note ${id}`) : { i, p: cur.paragraphs[i]! };
  };
  const withParagraph = (i: number, p: Paragraph): Note => ({ ...cur, paragraphs: cur.paragraphs.map((q, j) => (j === i ? p : q)) });
  const inFolder = (f: string, trashed: boolean): { error: string } | null =>
    !isInFolder(cur.path, f) ? no('conflict', `note ${id} (${cur.path}) is not in folder ${f}`)
      : cur.trashed !== trashed ? no('conflict', `note ${id} is ${cur.trashed ? '' : 'not '}in the trash`)
        : null;
  switch (a.type) {
    case 'deleteNote':
      return { delete: true };
    case 'updateNote': {
      const parent = parentFolder(cur.path);
      const path = a.name === undefined ? cur.path : `${parent === '/' ? '' : parent}/${a.name}`;
      return ok({ ...cur, path, config: a.config ?? cur.config });
    }
    case 'renameNote':
      return ok({ ...cur, path: a.path });
    case 'moveNoteToTrash':
      return cur.trashed ? no('conflict', `note ${id} is already in the trash`) : ok({ ...cur, trashed: true });
    case 'restoreNote':
      return cur.trashed ? ok({ ...cur, trashed: false }) : no('conflict', `note ${id} is not in the trash`);
    case 'renameFolder':
      return inFolder(a.from, false) ?? ok({ ...cur, path: movedPath(cur.path, a.from, a.to) });
    case 'removeFolder':
      // Any note under the folder, trashed or not: the caller chose to remove the folder for good.
      return isInFolder(cur.path, a.folder) ? { delete: true } : no('conflict', `note ${id} (${cur.path}) is not in folder ${a.folder}`);
    case 'moveFolderToTrash':
      return inFolder(a.folder, false) ?? ok({ ...cur, trashed: true });
    case 'restoreFolder':
      return inFolder(a.folder, true) ?? ok({ ...cur, trashed: false });
    case 'restoreAll':
      return cur.trashed ? ok({ ...cur, trashed: false }) : no('conflict', `note ${id} is not in the trash`);
    case 'emptyTrash':
      return cur.trashed ? { delete: true } : no('conflict', `note ${id} is not in the trash`);
    case 'insertParagraph': {
      if (cur.paragraphs.some((p) => p.id === a.paragraph.id)) return no('exists', `paragraph ${a.paragraph.id} is already in note ${id}`);
      if (cur.paragraphs.length >= MAX_PARAGRAPHS) return no('conflict', `note ${id} already has ${MAX_PARAGRAPHS} paragraphs`);
      // An index past the end (stale after a concurrent delete) appends.
      const at = Math.min(a.index, cur.paragraphs.length);
      const paragraphs = [...cur.paragraphs];
      paragraphs.splice(at, 0, paragraphFrom(a.paragraph));
      return ok({ ...cur, paragraphs });
    }
    case 'updateParagraph': {
      const f = para(a.paragraphId);
      if ('error' in f) return f;
      const p: Paragraph = { ...f.p };
      if (a.text !== undefined) p.text = a.text;
      if (a.title === null) delete p.title;
      else if (a.title !== undefined) p.title = a.title;
      if (a.config !== undefined) p.config = a.config;
      return ok(withParagraph(f.i, p));
    }
    case 'moveParagraph': {
      const f = para(a.paragraphId);
      if ('error' in f) return f;
      const paragraphs = cur.paragraphs.filter((_, j) => j !== f.i);
      paragraphs.splice(Math.min(a.index, paragraphs.length), 0, f.p);
      return ok({ ...cur, paragraphs });
    }
    case 'runParagraph':
    case 'setParagraphStatus': {
      const f = para(a.paragraphId);
      if ('error' in f) return f;
      const to: ParagraphStatus = a.type === 'runParagraph' ? 'PENDING' : a.status;
      if (!NEXT_STATUS[f.p.status].includes(to)) {
        return no('conflict', `paragraph ${a.paragraphId} cannot go from ${f.p.status} to ${to}${f.p.status === 'PENDING' || f.p.status === 'RUNNING' ? ' (it is already running)' : ''}`);
      }
      const p: Paragraph = { ...f.p, status: to };
      if (a.type === 'setParagraphStatus' && a.results !== undefined) {
        if (to === 'PENDING' || to === 'RUNNING') return no('invalid', `results come with FINISHED, ERROR or ABORT, not ${to}`);
        p.results = a.results;
      }
      return ok(withParagraph(f.i, p));
    }
    case 'clearParagraphOutput': {
      const f = para(a.paragraphId);
      if ('error' in f) return f;
      const { results: _dropped, ...p } = f.p;
      return ok(withParagraph(f.i, p));
    }
    case 'clearAllOutput':
      return ok({ ...cur, paragraphs: cur.paragraphs.map(({ results: _dropped, ...p }) => p) });
    case 'removeParagraph': {
      const f = para(a.paragraphId);
      if ('error' in f) return f;
      return ok({ ...cur, paragraphs: cur.paragraphs.filter((_, j) => j !== f.i) });
    }
    case 'setPermissions': {
      const permissions = { ...cur.permissions };
      for (const k of PERMISSION_KINDS) if (a[k] !== undefined) permissions[k] = normalizeEntities(a[k]!);
      return ok({ ...cur, permissions });
    }
  }
}
