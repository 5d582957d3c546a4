/**
 * A small Workbench-style HTTP server over one NoteSync (node:http, JSON in and out). Reads come
 * from this server's synced notebook; writes go through the log. Every write answers with the
 * revision it committed at; a read with `?minRevision=N` waits until this server has caught up to
 * N, so a client can write on one server and read its write back on another.
 *
 * Bodies follow Zeppelin's REST envelope: { status: 'OK', message, body } or, on error,
 * { status: 'BAD_REQUEST' | 'NOT_FOUND' | ..., message }. `X-User: name` makes writes check the
 * note's permissions as that user (with the roles the notebook holds for them).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { NoteSync, type OpOptions } from '../../actors/note-sync.ts';
import type { ClusterClient } from '../client.ts';
import { NoQuorumError, TimeoutError } from '../errors.ts';
import { isPlainObject, noteName, NoteError, type Note, type NoteErrorKind } from '../notebook/model.ts';

export interface WorkbenchOptions {
  client: ClusterClient;
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** Use this sync instead of opening one (it is then not closed by close()). */
  sync?: NoteSync;
  maxBodyBytes?: number;
  /** Longest wait for ?minRevision (default 10 s). */
  catchUpTimeoutMs?: number;
}

export interface Workbench {
  url: string;
  sync: NoteSync;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}
const badRequest = (message: string) => new HttpError(400, 'BAD_REQUEST', message);

const KIND_STATUS: Record<NoteErrorKind, [number, string]> = {
  invalid: [400, 'BAD_REQUEST'],
  notFound: [404, 'NOT_FOUND'],
  exists: [409, 'CONFLICT'],
  conflict: [409, 'CONFLICT'],
  forbidden: [403, 'FORBIDDEN'],
  tooLarge: [413, 'PAYLOAD_TOO_LARGE'],
};

type Body = Record<string, unknown>;
interface Ctx {
  sync: NoteSync;
  params: string[];
  body: Body;
  query: URLSearchParams;
  op: OpOptions;
}
type Handler = (c: Ctx) => Promise<{ status?: number; body: unknown; revision?: number }>;

/** Only the named fields; anything else is a typo the caller should hear about. */
function pick(body: Body, allowed: string[]): Body {
  const extra = Object.keys(body).find((k) => !allowed.includes(k) && k !== 'expectedVersion');
  if (extra) throw badRequest(`unknown field ${JSON.stringify(extra)} (allowed: ${allowed.join(', ') || 'none'})`);
  return body;
}

function str(body: Body, field: string, required: true): string;
function str(body: Body, field: string, required?: false): string | undefined;
function str(body: Body, field: string, required = false): string | undefined {
  const v = body[field];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string') throw badRequest(`${field} must be a string`);
  return v;
}

const summary = (n: Note) => ({ id: n.id, path: n.path, name: noteName(n.path), trashed: n.trashed, version: n.version });

function needNote(sync: NoteSync, id: string): Note {
  const n = sync.note(id);
  if (!n) throw new HttpError(404, 'NOT_FOUND', `note ${id} does not exist`);
  return n;
}

function needParagraph(note: Note, pid: string) {
  const p = note.paragraphs.find((q) => q.id === pid);
  if (!p) throw new HttpError(404, 'NOT_FOUND', `paragraph ${pid} is not in note ${note.id}`);
  return p;
}

const ROUTES: [method: string, pattern: RegExp, handler: Handler][] = [
  ['GET', /^\/api\/notebook$/, async ({ sync }) => ({ body: sync.notes().map(summary) })],
  ['GET', /^\/api\/notebook\/hash$/, async ({ sync }) => ({ body: { hash: sync.canonicalHash(), revision: sync.revision, state: sync.state } })],
  ['POST', /^\/api\/notebook$/, async ({ sync, body, op }) => {
    pick(body, ['path', 'name', 'paragraphs', 'config']);
    const path = str(body, 'path') ?? `/${str(body, 'name') ?? 'Untitled Note'}`;
    const paragraphs = body.paragraphs ?? [];
    if (!Array.isArray(paragraphs) || !paragraphs.every(isPlainObject)) throw badRequest('paragraphs must be a list of objects { text, title?, config? }');
    const r = await sync.createNote({ path, config: body.config as never, paragraphs: paragraphs as never }, op);
    return { status: 201, body: r.note, revision: r.revision };
  }],
  ['POST', /^\/api\/notebook\/import$/, async ({ sync, body, op }) => {
    pick(body, ['note', 'path']);
    if (body.note === undefined) throw badRequest('note (the exported note JSON) is required');
    const r = await sync.importNote(body.note, { path: str(body, 'path') }, op);
    return { status: 201, body: r.note, revision: r.revision };
  }],
  ['GET', /^\/api\/notebook\/([^/]+)$/, async ({ sync, params }) => ({ body: needNote(sync, params[0]!) })],
  ['PUT', /^\/api\/notebook\/([^/]+)$/, async ({ sync, params, body, op }) => {
    pick(body, ['name', 'config']);
    const r = await sync.updateNote(params[0]!, { name: str(body, 'name'), config: body.config as never }, op);
    return { body: r.note, revision: r.revision };
  }],
  ['DELETE', /^\/api\/notebook\/([^/]+)$/, async ({ sync, params, body, op }) => {
    pick(body, []);
    const r = await sync.deleteNote(params[0]!, op);
    return { body: null, revision: r.revision };
  }],
  ['POST', /^\/api\/notebook\/([^/]+)\/rename$/, async ({ sync, params, body, op }) => {
    pick(body, ['path', 'name']);
    const id = params[0]!;
    const name = str(body, 'name');
    const path = str(body, 'path');
    if ((name === undefined) === (path === undefined)) throw badRequest('give either path (a full new path) or name (a new name in the same folder)');
    const r = path !== undefined ? await sync.renameNote(id, path, op) : await sync.updateNote(id, { name }, op);
    return { body: r.note, revision: r.revision };
  }],
  ['POST', /^\/api\/notebook\/([^/]+)\/clone$/, async ({ sync, params, body, op }) => {
    pick(body, ['path']);
    const r = await sync.cloneNote(params[0]!, str(body, 'path') ?? `${needNote(sync, params[0]!).path} (copy)`, op);
    return { status: 201, body: r.note, revision: r.revision };
  }],
  ['POST', /^\/api\/notebook\/([^/]+)\/trash$/, async ({ sync, params, body, op }) => {
    pick(body, []);
    const r = await sync.moveNoteToTrash(params[0]!, op);
    return { body: r.note, revision: r.revision };
  }],
  ['POST', /^\/api\/notebook\/([^/]+)\/restore$/, async ({ sync, params, body, op }) => {
    pick(body, []);
    const r = await sync.restoreNote(params[0]!, op);
    return { body: r.note, revision: r.revision };
  }],
  ['PUT', /^\/api\/notebook\/([^/]+)\/permissions$/, async ({ sync, params, body, op }) => {
    pick(body, ['owners', 'writers', 'runners', 'readers']);
    const r = await sync.setPermissions(params[0]!, body as never, op);
    return { body: r.note?.permissions, revision: r.revision };
  }],
  ['POST', /^\/api\/notebook\/([^/]+)\/paragraph$/, async ({ sync, params, body, op }) => {
    pick(body, ['text', 'title', 'config', 'index']);
    const r = await sync.insertParagraph(params[0]!, { text: str(body, 'text'), title: str(body, 'title'), config: body.config as never, index: body.index as never }, op);
    return { status: 201, body: { paragraphId: r.paragraphId, note: r.note }, revision: r.revision };
  }],
  ['GET', /^\/api\/notebook\/([^/]+)\/paragraph\/([^/]+)$/, async ({ sync, params }) => ({ body: needParagraph(needNote(sync, params[0]!), params[1]!) })],
  ['PUT', /^\/api\/notebook\/([^/]+)\/paragraph\/([^/]+)$/, async ({ sync, params, body, op }) => {
    pick(body, ['text', 'title', 'config']);
    const r = await sync.updateParagraph(params[0]!, params[1]!, { text: str(body, 'text'), title: body.title as never, config: body.config as never }, op);
    return { body: r.note, revision: r.revision };
  }],
  ['DELETE', /^\/api\/notebook\/([^/]+)\/paragraph\/([^/]+)$/, async ({ sync, params, body, op }) => {
    pick(body, []);
    const r = await sync.removeParagraph(params[0]!, params[1]!, op);
    return { body: r.note, revision: r.revision };
  }],
  ['POST', /^\/api\/notebook\/([^/]+)\/paragraph\/([^/]+)\/move$/, async ({ sync, params, body, op }) => {
    pick(body, ['index']);
    const r = await sync.moveParagraph(params[0]!, params[1]!, body.index as number, op);
    return { body: r.note, revision: r.revision };
  }],
  ['POST', /^\/api\/notebook\/([^/]+)\/paragraph\/([^/]+)\/run$/, async ({ sync, params, body, op }) => {
    pick(body, []);
    const r = await sync.runParagraph(params[0]!, params[1]!, op);
    return { body: r.note, revision: r.revision };
  }],
  ['POST', /^\/api\/folder\/rename$/, async ({ sync, body, op }) => {
    pick(body, ['from', 'to']);
    const r = await sync.renameFolder(str(body, 'from', true), str(body, 'to', true), op);
    return { body: r.notes, revision: r.revision };
  }],
  ['POST', /^\/api\/folder\/trash$/, async ({ sync, body, op }) => {
    pick(body, ['folder']);
    const r = await sync.moveFolderToTrash(str(body, 'folder', true), op);
    return { body: r.notes, revision: r.revision };
  }],
  ['POST', /^\/api\/folder\/restore$/, async ({ sync, body, op }) => {
    pick(body, ['folder']);
    const r = await sync.restoreFolder(str(body, 'folder', true), op);
    return { body: r.notes, revision: r.revision };
  }],
  ['POST', /^\/api\/trash\/restore$/, async ({ sync, body, op }) => {
    pick(body, []);
    const r = await sync.restoreAll(op);
    return { body: r.notes, revision: r.revision };
  }],
  ['DELETE', /^\/api\/trash$/, async ({ sync, body, op }) => {
    pick(body, []);
    const r = await sync.emptyTrash(op);
    return { body: r.notes, revision: r.revision };
  }],
];

async function readBody(req: IncomingMessage, maxBytes: number): Promise<Body> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `request body is over ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw badRequest(`request body is not JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw badRequest('request body must be a JSON object');
  return parsed;
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  const text = JSON.stringify(payload);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function errorReply(err: unknown): [number, Body] {
  if (err instanceof HttpError) return [err.status, { status: err.code, message: err.message }];
  if (err instanceof NoteError) {
    const [status, code] = KIND_STATUS[err.kind];
    return [status, { status: code, message: err.message, kind: err.kind }];
  }
  if (err instanceof NoQuorumError || err instanceof TimeoutError) return [503, { status: 'SERVICE_UNAVAILABLE', message: err.message }];
  return [500, { status: 'INTERNAL_SERVER_ERROR', message: (err as Error).message ?? String(err) }];
}

export async function startWorkbench(o: WorkbenchOptions): Promise<Workbench> {
  const ownsSync = !o.sync;
  const sync = o.sync ?? (await NoteSync.open({ client: o.client }));
  const maxBodyBytes = o.maxBodyBytes ?? 1024 * 1024;
  const catchUpTimeoutMs = o.catchUpTimeoutMs ?? 10_000;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const url = new URL(req.url ?? '/', 'http://workbench');
      // The first pattern that matches names the resource ('/api/notebook/hash' is not a note id).
      const first = ROUTES.find(([, pattern]) => pattern.test(url.pathname));
      if (!first) throw new HttpError(404, 'NOT_FOUND', `no route ${url.pathname}`);
      const matches = ROUTES.filter(([, pattern]) => pattern.source === first[1].source);
      const route = matches.find(([method]) => method === req.method);
      if (!route) throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname} (allowed: ${matches.map(([m]) => m).join(', ')})`);
      const body = await readBody(req, maxBodyBytes);
      const minRevision = url.searchParams.get('minRevision');
      if (minRevision !== null) {
        const r = Number(minRevision);
        if (!Number.isSafeInteger(r) || r < 0) throw badRequest('minRevision must be a non-negative integer');
        await sync.whenRevision(r, catchUpTimeoutMs);
      }
      const op: OpOptions = {};
      if (body.expectedVersion !== undefined) {
        if (!Number.isSafeInteger(body.expectedVersion) || (body.expectedVersion as number) < 0) throw badRequest('expectedVersion must be a non-negative integer');
        op.expectedVersion = body.expectedVersion as number;
        delete body.expectedVersion;
      }
      const user = req.headers['x-user'];
      if (typeof user === 'string' && user !== '') op.by = sync.principal(user);
      const params = route[1].exec(url.pathname)!.slice(1).map((p) => {
        try {
          return decodeURIComponent(p);
        } catch {
          throw badRequest(`bad escape in ${p}`);
        }
      });
      const out = await route[2]({ sync, params, body, query: url.searchParams, op });
      send(res, out.status ?? 200, { status: 'OK', message: '', body: out.body, ...(out.revision !== undefined ? { revision: out.revision } : {}) });
    } catch (err) {
      const [status, payload] = errorReply(err);
      send(res, status, payload);
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${addr.port}`,
    sync,
    close: () => {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        if (ownsSync) await sync.close();
      })();
      return closing;
    },
  };
}
