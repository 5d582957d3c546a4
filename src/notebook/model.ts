/**
 * The notebook as plain data (msgpack/JSON-safe, no classes), shared by the replicated reducer,
 * the note-sync actor and the workbench. A folder is not an object: it is a path prefix, so a
 * folder exists while some note's path lies under it (as in Zeppelin).
 *
 * Keys in the metadata center: `notes/<noteId>` holds a Note; `notes/@roles/<user>` holds a
 * user's roles. Both sit under one prefix so one watch sees the whole notebook in log order
 * ('@' can never start a note id).
 */
import { createHash } from 'node:crypto';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export const PARAGRAPH_STATUSES = ['READY', 'PENDING', 'RUNNING', 'FINISHED', 'ERROR', 'ABORT'] as const;
export type ParagraphStatus = (typeof PARAGRAPH_STATUSES)[number];

export const RESULT_CODES = ['SUCCESS', 'ERROR', 'INCOMPLETE', 'KEEP_PREVIOUS_RESULT'] as const;
/** Zeppelin's InterpreterResult: a code and typed messages (TEXT, HTML, TABLE, ...). */
export interface ParagraphResults {
  code: (typeof RESULT_CODES)[number];
  msg: { type: string; data: string }[];
}

/** Optional fields are absent, never undefined (stored values must encode identically everywhere). */
export interface Paragraph {
  id: string;
  text: string;
  title?: string;
  config?: JsonObject;
  results?: ParagraphResults;
  status: ParagraphStatus;
}

/** Entities are user names or role names; an empty list means "everyone" (Zeppelin semantics). */
export interface Permissions {
  owners: string[];
  writers: string[];
  runners: string[];
  readers: string[];
}
export const PERMISSION_KINDS = ['owners', 'writers', 'runners', 'readers'] as const;
export type PermissionKind = (typeof PERMISSION_KINDS)[number];

export interface Note {
  id: string;
  /** '/folder/sub/name': the last segment is the note's name. */
  path: string;
  config: JsonObject;
  paragraphs: Paragraph[];
  permissions: Permissions;
  trashed: boolean;
  /** 1 on create, +1 per applied operation. */
  version: number;
}

export interface UserRoles {
  user: string;
  roles: string[];
}

/** Who asks for an operation; when an action carries one, the reducer checks the note's permissions. */
export interface Principal {
  user: string;
  roles: string[];
}

export const NOTES_PREFIX = 'notes/';
export const ROLES_PREFIX = 'notes/@roles/';
export const MAX_PATH_CHARS = 1024;
export const MAX_PARAGRAPHS = 2000;
export const MAX_ENTITIES = 256;
export const MAX_NAME_CHARS = 256;
const MAX_JSON_DEPTH = 32;

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export const noteKey = (id: string): string => `${NOTES_PREFIX}${id}`;
export const rolesKey = (user: string): string => `${ROLES_PREFIX}${user}`;

export function parseNotebookKey(key: string): { kind: 'note'; id: string } | { kind: 'roles'; user: string } | null {
  if (key.startsWith(ROLES_PREFIX)) {
    const user = key.slice(ROLES_PREFIX.length);
    return entityProblem(user, 'user') ? null : { kind: 'roles', user };
  }
  if (!key.startsWith(NOTES_PREFIX)) return null;
  const id = key.slice(NOTES_PREFIX.length);
  return ID.test(id) ? { kind: 'note', id } : null;
}

// ---- kinds of errors ----------------------------------------------------------------------------

/** Reducer refusals are messages "<kind>: <text>", so the kind survives the trip through the log. */
export type NoteErrorKind = 'invalid' | 'notFound' | 'exists' | 'conflict' | 'forbidden' | 'tooLarge';
const KINDS: readonly NoteErrorKind[] = ['invalid', 'notFound', 'exists', 'conflict', 'forbidden', 'tooLarge'];

export class NoteError extends Error {
  override name = 'NoteError';
  constructor(readonly kind: NoteErrorKind, message: string, readonly revision?: number) {
    super(message);
  }
}

export const refusal = (kind: NoteErrorKind, text: string): string => `${kind}: ${text}`;

/** Reads a refusal back, also when a batch prefixed it with "op N: ". */
export function parseRefusal(message: string): { kind: NoteErrorKind; text: string } | null {
  const m = /^(?:op \d+: )?(\w+): ([\s\S]*)$/.exec(message);
  return m && (KINDS as readonly string[]).includes(m[1]!) ? { kind: m[1] as NoteErrorKind, text: m[2]! } : null;
}

// ---- validation ----------------------------------------------------------------------------------

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function idProblem(id: unknown, what: string): string | null {
  return typeof id === 'string' && ID.test(id) ? null : `${what} must match ${ID} (got ${JSON.stringify(id)})`;
}

export function entityProblem(e: unknown, what: string): string | null {
  if (typeof e !== 'string' || e.trim() !== e || e === '' || e.length > MAX_NAME_CHARS || /[\u0000-\u001f/]/.test(e)) {
    return `${what} must be a non-empty name without '/', control characters or surrounding spaces (got ${JSON.stringify(e)})`;
  }
  return null;
}

/** '/a/b/name': leading '/', no empty, '.' or '..' segment, no trailing '/', no control characters. */
export function pathProblem(path: unknown, what = 'path'): string | null {
  if (typeof path !== 'string') return `${what} must be a string`;
  if (path.length > MAX_PATH_CHARS) return `${what} is longer than ${MAX_PATH_CHARS} characters`;
  if (!path.startsWith('/') || path === '/') return `${what} must start with '/' and name something (got ${JSON.stringify(path)})`;
  if (/[\u0000-\u001f]/.test(path)) return `${what} contains control characters`;
  for (const seg of path.slice(1).split('/')) {
    if (seg === '' || seg === '.' || seg === '..' || seg.trim() !== seg) return `${what} has an empty, '.', '..' or space-padded segment (got ${JSON.stringify(path)})`;
  }
  return null;
}

export function jsonProblem(v: unknown, what: string, depth = 0): string | null {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return null;
  if (typeof v === 'number') return Number.isFinite(v) ? null : `${what} has a non-finite number`;
  if (depth >= MAX_JSON_DEPTH) return `${what} is nested deeper than ${MAX_JSON_DEPTH} levels`;
  if (Array.isArray(v)) {
    for (const x of v) {
      const p = jsonProblem(x, what, depth + 1);
      if (p) return p;
    }
    return null;
  }
  if (!isPlainObject(v)) return `${what} must be JSON data`;
  for (const x of Object.values(v)) {
    const p = jsonProblem(x, what, depth + 1);
    if (p) return p;
  }
  return null;
}

export const jsonObjectProblem = (v: unknown, what: string): string | null => (isPlainObject(v) ? jsonProblem(v, what) : `${what} must be an object`);

export function resultsProblem(r: unknown): string | null {
  if (!isPlainObject(r)) return 'results must be an object { code, msg }';
  if (!(RESULT_CODES as readonly unknown[]).includes(r.code)) return `results.code must be one of ${RESULT_CODES.join(', ')}`;
  if (!Array.isArray(r.msg) || !r.msg.every((m) => isPlainObject(m) && typeof m.type === 'string' && typeof m.data === 'string' && Object.keys(m).length === 2)) {
    return 'results.msg must be a list of { type, data } strings';
  }
  return Object.keys(r).length === 2 ? null : 'results has fields other than code and msg';
}

const PARAGRAPH_FIELDS = new Set(['id', 'text', 'title', 'config', 'results', 'status']);

export function paragraphProblem(p: unknown): string | null {
  if (!isPlainObject(p)) return 'paragraph must be an object';
  const extra = Object.keys(p).find((k) => !PARAGRAPH_FIELDS.has(k));
  if (extra) return `paragraph has unknown field ${JSON.stringify(extra)}`;
  return idProblem(p.id, 'paragraph id')
    ?? (typeof p.text === 'string' ? null : `paragraph ${p.id}: text must be a string`)
    ?? ('title' in p && typeof p.title !== 'string' ? `paragraph ${p.id}: title must be a string` : null)
    ?? ('config' in p ? jsonObjectProblem(p.config, `paragraph ${p.id}: config`) : null)
    ?? ('results' in p ? resultsProblem(p.results) : null)
    ?? ((PARAGRAPH_STATUSES as readonly unknown[]).includes(p.status) ? null : `paragraph ${p.id}: status must be one of ${PARAGRAPH_STATUSES.join(', ')}`);
}

/** Entity lists are stored sorted and without duplicates, so equal permissions are equal data. */
export function entitiesProblem(list: unknown, what: string): string | null {
  if (!Array.isArray(list)) return `${what} must be a list of names`;
  if (list.length > MAX_ENTITIES) return `${what} has more than ${MAX_ENTITIES} entries`;
  for (const e of list) {
    const p = entityProblem(e, `${what} entry`);
    if (p) return p;
  }
  return null;
}

export const normalizeEntities = (list: readonly string[]): string[] => [...new Set(list)].sort();

const NOTE_FIELDS = ['config', 'id', 'paragraphs', 'path', 'permissions', 'trashed', 'version'];

/** Every invariant of a stored note; [] when valid. Used by the reducer (as an assertion) and by readers. */
export function noteProblems(n: unknown): string[] {
  if (!isPlainObject(n)) return ['note must be an object'];
  const out: string[] = [];
  const push = (p: string | null) => p && out.push(p);
  const keys = Object.keys(n).sort();
  if (keys.join() !== NOTE_FIELDS.join()) out.push(`note fields must be exactly ${NOTE_FIELDS.join(', ')} (got ${keys.join(', ')})`);
  push(idProblem(n.id, 'note id'));
  push(pathProblem(n.path, 'note path'));
  push(jsonObjectProblem(n.config, 'note config'));
  if (typeof n.trashed !== 'boolean') out.push('trashed must be a boolean');
  if (!Number.isSafeInteger(n.version) || (n.version as number) < 1) out.push('version must be a positive integer');
  if (!Array.isArray(n.paragraphs)) out.push('paragraphs must be a list');
  else {
    if (n.paragraphs.length > MAX_PARAGRAPHS) out.push(`more than ${MAX_PARAGRAPHS} paragraphs`);
    const ids = new Set<unknown>();
    for (const p of n.paragraphs) {
      push(paragraphProblem(p));
      const id = isPlainObject(p) ? p.id : undefined;
      if (ids.has(id)) out.push(`duplicate paragraph id ${JSON.stringify(id)}`);
      ids.add(id);
    }
  }
  const perms = n.permissions;
  if (!isPlainObject(perms) || Object.keys(perms).sort().join() !== [...PERMISSION_KINDS].sort().join()) {
    out.push(`permissions must have exactly ${PERMISSION_KINDS.join(', ')}`);
  } else {
    for (const k of PERMISSION_KINDS) {
      const list = perms[k];
      const p = entitiesProblem(list, `permissions.${k}`);
      if (p) out.push(p);
      else if (JSON.stringify(normalizeEntities(list as string[])) !== JSON.stringify(list)) out.push(`permissions.${k} must be sorted and without duplicates`);
    }
  }
  return out;
}

export function rolesProblems(v: unknown, user?: string): string[] {
  if (!isPlainObject(v) || Object.keys(v).sort().join() !== 'roles,user') return ['roles value must be { user, roles }'];
  const out: string[] = [];
  const p = entityProblem(v.user, 'user') ?? entitiesProblem(v.roles, 'roles');
  if (p) out.push(p);
  else if (JSON.stringify(normalizeEntities(v.roles as string[])) !== JSON.stringify(v.roles)) out.push('roles must be sorted and without duplicates');
  if (user !== undefined && v.user !== user) out.push(`roles value is for ${JSON.stringify(v.user)}, key is for ${JSON.stringify(user)}`);
  return out;
}

// ---- folders and names ----------------------------------------------------------------------------

/** True when `path` lies strictly inside folder `folder` ('/a' contains '/a/b', not '/ab'). */
export const isInFolder = (path: string, folder: string): boolean => path.startsWith(folder.endsWith('/') ? folder : `${folder}/`);

export const noteName = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

export const parentFolder = (path: string): string => path.slice(0, path.lastIndexOf('/')) || '/';

/** The same note path with folder `from` replaced by `to`. */
export function movedPath(path: string, from: string, to: string): string {
  if (!isInFolder(path, from)) throw new Error(`path ${path} is not in folder ${from}`);
  return to + path.slice(from.length);
}

/** Every folder that holds at least one (non-trashed) note, sorted. */
export function folders(notes: Iterable<Note>): string[] {
  const out = new Set<string>();
  for (const n of notes) {
    if (n.trashed) continue;
    for (let f = parentFolder(n.path); f !== '/'; f = parentFolder(f)) out.add(f);
  }
  return [...out].sort();
}

// ---- permissions (Zeppelin's rules: each level includes the ones above it) -----------------------

const LEVELS: Record<PermissionKind, PermissionKind[]> = {
  owners: ['owners'],
  writers: ['owners', 'writers'],
  runners: ['owners', 'writers', 'runners'],
  readers: ['owners', 'writers', 'runners', 'readers'],
};

export function hasPermission(note: Pick<Note, 'permissions'>, who: Principal, kind: PermissionKind): boolean {
  if (note.permissions[kind].length === 0) return true;
  const mine = new Set([who.user, ...who.roles]);
  return LEVELS[kind].some((k) => note.permissions[k].some((e) => mine.has(e)));
}

// ---- canonical form --------------------------------------------------------------------------------

/** JSON with object keys sorted at every level: equal data, equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isPlainObject(v)) {
    const keys = Object.keys(v).filter((k) => v[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export function notebookHash(notes: Iterable<Note>, roles: Iterable<UserRoles>): string {
  const byId = [...notes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const byUser = [...roles].sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0));
  return createHash('sha256').update(canonicalJson({ notes: byId, roles: byUser })).digest('hex');
}

// ---- import ---------------------------------------------------------------------------------------

const strOr = (v: unknown, d: string): string => (typeof v === 'string' ? v : d);

/**
 * A note in Zeppelin's export format (note.json / .zpln: { name, path?, paragraphs: [{ id, text,
 * title, config, results, status }], config }) as our data under a new id. Paragraphs that were
 * running when exported come back ABORT; unknown fields are dropped.
 */
export function fromZeppelinJson(raw: unknown, o: { id: string; path?: string; newParagraphId: () => string }): Omit<Note, 'version' | 'trashed'> {
  if (!isPlainObject(raw)) throw new NoteError('invalid', 'imported note must be a JSON object');
  const name = strOr(raw.name, '').trim();
  const stored = typeof raw.path === 'string' && raw.path ? raw.path : `/${name || 'Untitled Note'}`;
  const path = o.path ?? (stored.startsWith('/') ? stored : `/${stored}`);
  const seen = new Set<string>();
  const paragraphs = (Array.isArray(raw.paragraphs) ? raw.paragraphs : []).map((p): Paragraph => {
    const q = isPlainObject(p) ? p : {};
    const status = (PARAGRAPH_STATUSES as readonly unknown[]).includes(q.status) ? (q.status as ParagraphStatus) : 'READY';
    const id = idProblem(q.id, 'id') || seen.has(q.id as string) ? o.newParagraphId() : (q.id as string);
    seen.add(id);
    const out: Paragraph = {
      id,
      text: strOr(q.text, ''),
      status: status === 'PENDING' || status === 'RUNNING' ? 'ABORT' : status,
    };
    if (typeof q.title === 'string') out.title = q.title;
    if (isPlainObject(q.config) && !jsonProblem(q.config, 'config')) out.config = q.config as JsonObject;
    if (resultsProblem(q.results) === null) out.results = q.results as ParagraphResults;
    return out;
  });
  const config = isPlainObject(raw.config) && !jsonProblem(raw.config, 'config') ? (raw.config as JsonObject) : {};
  return { id: o.id, path, config, paragraphs, permissions: { owners: [], writers: [], runners: [], readers: [] } };
}
