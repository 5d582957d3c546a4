/**
 * NoteSync: one server's copy of the replicated notebook. It lists `notes/`, then follows the
 * watch from the listed revision, so the local notebook is always the state at some log revision;
 * a compacted history (e.g. every member restarted) replaces it from a fresh list. Every
 * operation is a `reduce` command through the Raft log (reducer "notebook"), so all servers apply
 * the same changes in the same order: one that was down or cut off converges when it reconnects.
 *
 * The chart (machines/note-sync.ts) names the lifecycle; this class owns the watch, timers and
 * the local maps. Change events feed websockets; canonicalHash() compares servers.
 */
import { randomBytes } from 'node:crypto';
import { createActor, type Actor } from 'xstate';
import { noteSyncMachine, type NoteSyncEvent, type NoteSyncState } from '../machines/note-sync.ts';
import type { ClusterClient, Watcher } from '../src/client.ts';
import { MetaError, TimeoutError } from '../src/errors.ts';
import {
  folders, fromZeppelinJson, isInFolder, noteKey, noteProblems, notebookHash, NoteError, NOTES_PREFIX, parseNotebookKey, parseRefusal,
  rolesKey, rolesProblems,
  type JsonObject, type Note, type ParagraphResults, type ParagraphStatus, type Permissions, type Principal, type UserRoles,
} from '../src/notebook/model.ts';
import { actionProblem, NOTEBOOK_REDUCER, type NoteAction, type NotebookAction, type NoteInit, type ParagraphInit } from '../src/notebook/reducer.ts';
import type { KeyValue, MetaCommand, MetaResult, WatchEvent } from '../src/sm/metadata.ts';
import { realClock, silentLogger, type Clock, type Logger } from './ports.ts';
import { jitteredBackoff, RetryTimer } from './retry.ts';

export interface NoteSyncOptions {
  client: ClusterClient;
  logger?: Logger;
  clock?: Clock;
  random?: () => number;
  /** How long an operation waits for its own change to reach the local notebook (default 10 s). */
  catchUpTimeoutMs?: number;
  /** Load retry n waits in [minMs, min(maxMs, minMs * 2^(n-1))]. Default 100..3000. */
  backoff?: { minMs: number; maxMs: number };
  /** How often a multi-note operation rebuilds its batch after concurrent changes before giving up (default 8). */
  maxRounds?: number;
}

export interface OpOptions {
  /** Refuse the edit (NoteError 'conflict') unless the note is at this version (0: absent). */
  expectedVersion?: number;
  /** The user asking: the reducer then checks the note's permissions in log order. */
  by?: Principal;
  /** Resolve only once the change is in this server's notebook (default true: read your writes; gives up silently after catchUpTimeoutMs). */
  wait?: boolean;
}

export type MultiOpOptions = Omit<OpOptions, 'expectedVersion'>;

export interface OpResult {
  revision: number;
  /** The note after the operation; null when it was deleted. */
  note: Note | null;
}

/** For websockets: what changed in this server's notebook. `reset`: reload everything (after a (re)load). */
export type NoteChange =
  | { type: 'note'; id: string; note: Note | null; prev: Note | null; revision: number }
  | { type: 'roles'; user: string; roles: string[]; revision: number }
  | { type: 'reset'; revision: number };

export interface NoteSyncStatus {
  state: NoteSyncState;
  revision: number;
  notes: number;
  resyncs: number;
  watchErrors: number;
  lastError: string | null;
  /** The member serving the watch. */
  member: string | null;
  /** Values under notes/ that were not valid notebook data (written around the reducer). */
  ignoredValues: number;
}

interface Waiter {
  revision: number;
  resolve(): void;
  reject(err: Error): void;
  timer: unknown;
}

type NewParagraph = Omit<ParagraphInit, 'id'> & { id?: string };

export class NoteSync {
  readonly client: ClusterClient;
  private readonly notesById = new Map<string, Note>();
  private readonly rolesByUser = new Map<string, string[]>();
  /** modRevision per key held locally: a re-delivered older event must not undo a newer state. */
  private readonly keyRevisions = new Map<string, number>();
  /** The local notebook is the cluster's state at this revision (or later, through the watch cursor). */
  private applied = 0;
  private watcher: Watcher | null = null;
  /** Bumped on every (re)load and on stop: answers of an older load are dropped. */
  private loadToken = 0;
  private readonly retryTimer: RetryTimer;
  private readonly ticker: NodeJS.Timeout;
  private waiters: Waiter[] = [];
  private readonly listeners = new Set<(c: NoteChange) => void>();
  private readonly machineActor: Actor<typeof noteSyncMachine>;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly catchUpTimeoutMs: number;
  private readonly maxRounds: number;
  private ignoredValues = 0;
  /** One write at a time: a client session's sequence numbers must reach the leader in order. */
  private writeChain: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;

  constructor(o: NoteSyncOptions) {
    this.client = o.client;
    this.log = o.logger ?? silentLogger;
    this.clock = o.clock ?? realClock;
    this.random = o.random ?? Math.random;
    this.catchUpTimeoutMs = o.catchUpTimeoutMs ?? 10_000;
    this.maxRounds = o.maxRounds ?? 8;
    const nextDelayMs = jitteredBackoff(o.backoff ?? { minMs: 100, maxMs: 3000 }, () => this.random());
    this.retryTimer = new RetryTimer(this.clock, () => this.signal({ type: 'RETRY_DUE' }));
    const machine = noteSyncMachine.provide({
      actions: {
        startLoad: () => void this.load(++this.loadToken),
        scheduleRetry: ({ context }) => this.retryTimer.schedule(context.delayMs),
        cancelRetry: () => this.retryTimer.cancel(),
        stopWatch: () => {
          this.loadToken++;
        },
      },
    });
    this.machineActor = createActor(machine, { input: { nextDelayMs } });
    // Progress pushes move the watch cursor without events; reconnects end without a callback.
    this.ticker = setInterval(() => this.poll(), 100);
    this.ticker.unref();
  }

  /** Starts syncing and resolves once the notebook is loaded and live. */
  static async open(o: NoteSyncOptions & { readyTimeoutMs?: number }): Promise<NoteSync> {
    const sync = new NoteSync(o);
    sync.start();
    try {
      await sync.ready(o.readyTimeoutMs ?? 30_000);
    } catch (err) {
      await sync.close();
      throw err;
    }
    return sync;
  }

  start(): void {
    this.machineActor.start();
  }

  /** Resolves when the sync is (or becomes) live. */
  ready(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: unknown = null;
      const sub = this.machineActor.subscribe((s) => check(s.value as NoteSyncState));
      const finish = (err?: Error) => {
        sub.unsubscribe();
        if (timer !== null) this.clock.clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const check = (state: NoteSyncState) => {
        if (state === 'live') finish();
        else if (state === 'stopped') finish(new Error('note sync is stopped'));
      };
      timer = this.clock.setTimeout(() => finish(new TimeoutError(`note sync not live within ${timeoutMs} ms (${this.state}: ${this.status().lastError ?? 'no error'})`)), timeoutMs);
      check(this.state);
    });
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      this.signal({ type: 'STOP' });
      clearInterval(this.ticker);
      for (const w of this.waiters.splice(0)) {
        this.clock.clearTimeout(w.timer);
        w.reject(new Error('note sync is stopped'));
      }
      const watcher = this.watcher;
      this.watcher = null;
      await watcher?.close();
    })();
    return this.closing;
  }

  // ---- reading ------------------------------------------------------------------------------------

  get state(): NoteSyncState {
    return this.machineActor.getSnapshot().value as NoteSyncState;
  }

  /** The chart's running actor, for the dashboard. */
  get actor(): Actor<typeof noteSyncMachine> {
    return this.machineActor;
  }

  /** The log revision the local notebook reflects. */
  get revision(): number {
    return Math.max(this.applied, this.watcher?.revision ?? 0);
  }

  status(): NoteSyncStatus {
    const { context } = this.machineActor.getSnapshot();
    return {
      state: this.state, revision: this.revision, notes: this.notesById.size, resyncs: context.resyncs, watchErrors: context.watchErrors,
      lastError: context.lastError, member: this.watcher?.member ?? null, ignoredValues: this.ignoredValues,
    };
  }

  /** Every note (trashed ones too), by path then id. */
  notes(): Note[] {
    return [...this.notesById.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  note(id: string): Note | undefined {
    return this.notesById.get(id);
  }

  folders(): string[] {
    return folders(this.notesById.values());
  }

  roles(user: string): string[] {
    return this.rolesByUser.get(user) ?? [];
  }

  principal(user: string): Principal {
    return { user, roles: this.roles(user) };
  }

  /** sha256 over the notes sorted by id and the roles sorted by user, in canonical JSON: equal hashes, equal notebooks. */
  canonicalHash(): string {
    return notebookHash(this.notesById.values(), [...this.rolesByUser].map(([user, roles]): UserRoles => ({ user, roles })));
  }

  onChange(fn: (c: NoteChange) => void): () => void {
    const box = (c: NoteChange) => fn(c);
    this.listeners.add(box);
    return () => void this.listeners.delete(box);
  }

  /** Resolves once the local notebook reflects revision `revision` (TimeoutError after timeoutMs). */
  whenRevision(revision: number, timeoutMs = this.catchUpTimeoutMs): Promise<void> {
    if (this.revision >= revision) return Promise.resolve();
    if (this.closing) return Promise.reject(new Error('note sync is stopped'));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        revision, resolve, reject,
        timer: this.clock.setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new TimeoutError(`the local notebook did not reach revision ${revision} within ${timeoutMs} ms (at ${this.revision}, ${this.state})`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  // ---- note operations --------------------------------------------------------------------------

  /** Zeppelin's createNote: a new note (id generated unless given) at `path`. */
  async createNote(init: { path: string; id?: string; config?: JsonObject; paragraphs?: NewParagraph[]; permissions?: Partial<Permissions> }, o: OpOptions = {}): Promise<OpResult> {
    const id = init.id ?? newNoteId();
    this.refuseTakenPath(init.path);
    const note: NoteInit = { ...init, id, paragraphs: (init.paragraphs ?? []).map((p) => ({ ...p, id: p.id ?? newParagraphId() })) };
    return this.noteOp(id, { type: 'createNote', note }, o);
  }

  /** A note exported by Zeppelin (note.json / .zpln, as text or parsed) under a new id. */
  async importNote(json: unknown, at: { path?: string; id?: string } = {}, o: OpOptions = {}): Promise<OpResult> {
    let raw = json;
    if (typeof json === 'string') {
      try {
        raw = JSON.parse(json);
      } catch (err) {
        throw new NoteError('invalid', `imported note is not JSON: ${(err as Error).message}`);
      }
    }
    const note = fromZeppelinJson(raw, { id: at.id ?? newNoteId(), path: at.path, newParagraphId });
    this.refuseTakenPath(note.path);
    return this.noteOp(note.id, { type: 'importNote', note }, o);
  }

  /** A copy of a note as this server sees it, with new ids, at `path`; owned by `by` when given. */
  async cloneNote(sourceId: string, path: string, o: OpOptions = {}): Promise<OpResult> {
    const source = this.notesById.get(sourceId);
    if (!source) throw new NoteError('notFound', `note ${sourceId} does not exist`);
    this.refuseTakenPath(path);
    const id = newNoteId();
    const paragraphs = source.paragraphs.map((p): ParagraphInit => ({
      ...p, id: newParagraphId(), status: p.status === 'PENDING' || p.status === 'RUNNING' ? 'READY' : p.status,
    }));
    return this.noteOp(id, { type: 'cloneNote', sourceId, note: { id, path, config: source.config, paragraphs } }, o);
  }

  deleteNote(id: string, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(id, { type: 'deleteNote' }, o);
  }

  /** Zeppelin's updateNote: the name (last path segment) and/or the note config. */
  updateNote(id: string, patch: { name?: string; config?: JsonObject }, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(id, { type: 'updateNote', ...patch }, o);
  }

  async renameNote(id: string, path: string, o: OpOptions = {}): Promise<OpResult> {
    this.refuseTakenPath(path, id);
    return this.noteOp(id, { type: 'renameNote', path }, o);
  }

  moveNoteToTrash(id: string, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(id, { type: 'moveNoteToTrash' }, o);
  }

  restoreNote(id: string, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(id, { type: 'restoreNote' }, o);
  }

  renameFolder(from: string, to: string, o: MultiOpOptions = {}) {
    return this.multiOp(`folder ${from}`, (n) => !n.trashed && isInFolder(n.path, from), { type: 'renameFolder', from, to }, o, true);
  }

  /** Deletes every note under the folder, trashed or not. */
  removeFolder(folder: string, o: MultiOpOptions = {}) {
    return this.multiOp(`folder ${folder}`, (n) => isInFolder(n.path, folder), { type: 'removeFolder', folder }, o, true);
  }

  moveFolderToTrash(folder: string, o: MultiOpOptions = {}) {
    return this.multiOp(`folder ${folder}`, (n) => !n.trashed && isInFolder(n.path, folder), { type: 'moveFolderToTrash', folder }, o, true);
  }

  restoreFolder(folder: string, o: MultiOpOptions = {}) {
    return this.multiOp(`trashed folder ${folder}`, (n) => n.trashed && isInFolder(n.path, folder), { type: 'restoreFolder', folder }, o, true);
  }

  restoreAll(o: MultiOpOptions = {}) {
    return this.multiOp('trash', (n) => n.trashed, { type: 'restoreAll' }, o, false);
  }

  emptyTrash(o: MultiOpOptions = {}) {
    return this.multiOp('trash', (n) => n.trashed, { type: 'emptyTrash' }, o, false);
  }

  // ---- paragraph operations --------------------------------------------------------------------

  /** Inserts at `index` (default: at the end as of the commit); resolves with the paragraph id. */
  async insertParagraph(noteId: string, p: NewParagraph & { index?: number }, o: OpOptions = {}): Promise<OpResult & { paragraphId: string }> {
    const { index = Number.MAX_SAFE_INTEGER, ...rest } = p;
    const paragraph: ParagraphInit = { ...rest, id: rest.id ?? newParagraphId() };
    const r = await this.noteOp(noteId, { type: 'insertParagraph', index, paragraph }, o);
    return { ...r, paragraphId: paragraph.id };
  }

  /** Zeppelin's commitParagraph: text, title (null removes it) and/or config. */
  updateParagraph(noteId: string, paragraphId: string, patch: { text?: string; title?: string | null; config?: JsonObject }, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(noteId, { type: 'updateParagraph', paragraphId, ...patch }, o);
  }

  moveParagraph(noteId: string, paragraphId: string, index: number, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(noteId, { type: 'moveParagraph', paragraphId, index }, o);
  }

  /** Marks the paragraph PENDING; the runner reports RUNNING and FINISHED/ERROR through setParagraphStatus. */
  runParagraph(noteId: string, paragraphId: string, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(noteId, { type: 'runParagraph', paragraphId }, o);
  }

  setParagraphStatus(noteId: string, paragraphId: string, status: ParagraphStatus, results?: ParagraphResults, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(noteId, { type: 'setParagraphStatus', paragraphId, status, results }, o);
  }

  clearParagraphOutput(noteId: string, paragraphId: string, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(noteId, { type: 'clearParagraphOutput', paragraphId }, o);
  }

  clearAllOutput(noteId: string, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(noteId, { type: 'clearAllOutput' }, o);
  }

  removeParagraph(noteId: string, paragraphId: string, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(noteId, { type: 'removeParagraph', paragraphId }, o);
  }

  // ---- permissions and roles ------------------------------------------------------------------

  /** Replaces the given lists (owners, writers, runners, readers); the others stay. */
  setPermissions(noteId: string, perms: Partial<Permissions>, o: OpOptions = {}): Promise<OpResult> {
    return this.noteOp(noteId, { type: 'setPermissions', ...perms }, o);
  }

  /** Zeppelin's setRoles(user, roles); an empty list removes the user's roles. */
  async setRoles(user: string, roles: string[], o: Pick<OpOptions, 'wait'> = {}): Promise<{ revision: number }> {
    const { revision } = await this.commit(rolesKey(user), { type: 'setRoles', user, roles }, o);
    return { revision };
  }

  // ---- plumbing: writes ---------------------------------------------------------------------------

  private async noteOp(id: string, action: NoteAction, o: OpOptions): Promise<OpResult> {
    const full = { ...action, ...(o.expectedVersion !== undefined ? { expectedVersion: o.expectedVersion } : {}), ...(o.by ? { by: o.by } : {}) } as NoteAction;
    const { revision, kv } = await this.commit(noteKey(id), full, o);
    return { revision, note: (kv?.value as Note | undefined) ?? null };
  }

  private async commit(key: string, action: NotebookAction, o: { wait?: boolean }): Promise<{ revision: number; kv: KeyValue | null }> {
    const clean = stripUndefined(action);
    const problem = actionProblem(clean);
    if (problem) throw new NoteError('invalid', problem);
    const r = await this.write({ op: 'reduce', reducer: NOTEBOOK_REDUCER, key, action: clean });
    if (!r.ok) throw toNoteError(r);
    if (o.wait !== false) await this.catchUp(r.revision);
    return { revision: r.revision, kv: r.kv ?? null };
  }

  private write(cmd: MetaCommand): Promise<MetaResult> {
    const next = this.writeChain.then(() => this.client.write(cmd));
    this.writeChain = next.catch(() => {});
    return next;
  }

  /**
   * One batch of per-note actions over the notes `select` picks from a fresh (linearizable) list.
   * Each op carries the note's listed modRevision, and each action re-checks that its note still
   * qualifies, so a batch built from a view that changed meanwhile is refused whole and rebuilt.
   * After it commits, notes that qualified but were created or moved in while the batch was being
   * built (modRevision below the batch) get the same treatment in a follow-up batch.
   */
  private async multiOp(what: string, select: (n: Note) => boolean, action: NoteAction, o: MultiOpOptions, emptyIsError: boolean): Promise<{ revision: number; notes: string[] }> {
    const problem = actionProblem(stripUndefined({ ...action, ...(o.by ? { by: o.by } : {}) }));
    if (problem) throw new NoteError('invalid', problem);
    let cutoff = Infinity;
    let revision = 0;
    const touched: string[] = [];
    for (let round = 1; ; round++) {
      if (round > this.maxRounds) throw new NoteError('conflict', `${what}: notes kept changing under the operation (${this.maxRounds} rounds); try again`);
      const listed = await this.client.list(NOTES_PREFIX);
      revision = Math.max(revision, listed.revision);
      const targets = listed.kvs.filter((kv) => {
        const key = parseNotebookKey(kv.key);
        return key?.kind === 'note' && kv.modRevision < cutoff && noteProblems(kv.value).length === 0 && select(kv.value as Note);
      });
      if (targets.length === 0) break;
      const ops: MetaCommand[] = targets.map((kv) => ({
        op: 'reduce', reducer: NOTEBOOK_REDUCER, key: kv.key, expectedRevision: kv.modRevision,
        action: stripUndefined({ ...action, ...(o.by ? { by: o.by } : {}) }),
      }));
      const r = await this.write({ op: 'batch', ops });
      if (!r.ok) {
        const err = toNoteError(r);
        if (err instanceof NoteError && err.kind === 'conflict') continue; // the view went stale: rebuild
        throw err;
      }
      if (cutoff === Infinity) cutoff = r.revision;
      revision = r.revision;
      touched.push(...targets.map((kv) => kv.key.slice(NOTES_PREFIX.length)));
    }
    if (touched.length === 0 && emptyIsError) throw new NoteError('notFound', `${what}: no note there`);
    if (o.wait !== false) await this.catchUp(revision);
    return { revision, notes: touched };
  }

  /**
   * Waits for a committed change to show locally. The change is committed either way, so a slow
   * watch (its member just died) must not turn a success into an error: the caller still gets the
   * revision and can wait with whenRevision.
   */
  private async catchUp(revision: number): Promise<void> {
    try {
      await this.whenRevision(revision);
    } catch (err) {
      this.log.warn({ revision, err: (err as Error).message }, 'note sync: committed, but not yet visible on this server');
    }
  }

  /** Zeppelin refuses a second note at the same path; checked against this server's view (best effort: two servers racing can both succeed). */
  private refuseTakenPath(path: string, self?: string): void {
    for (const n of this.notesById.values()) {
      if (!n.trashed && n.path === path && n.id !== self) throw new NoteError('exists', `note ${n.id} already has path ${path}`);
    }
  }

  // ---- plumbing: the watch -----------------------------------------------------------------------

  private signal(event: NoteSyncEvent): void {
    if (this.machineActor.getSnapshot().status === 'active') this.machineActor.send(event);
  }

  private async load(token: number): Promise<void> {
    const current = () => token === this.loadToken;
    try {
      const listed = await this.client.list(NOTES_PREFIX);
      if (!current()) return;
      this.replace(listed.kvs, listed.revision);
      const watcher = await this.client.watch(NOTES_PREFIX, {
        fromRevision: listed.revision,
        onEvent: (ev) => current() && this.onEvent(ev),
        onResync: (kvs, revision) => current() && this.onResync(kvs, revision),
        onError: (err) => current() && this.signal({ type: 'WATCH_ERROR', error: err.message }),
      });
      if (!current()) return void (await watcher.close());
      const old = this.watcher;
      this.watcher = watcher;
      void old?.close();
      this.signal({ type: 'LOADED', revision: this.applied });
      this.settle();
    } catch (err) {
      if (!current()) return;
      this.log.warn({ err: (err as Error).message }, 'note sync: load failed');
      this.signal({ type: 'LOAD_FAILED', error: (err as Error).message });
    }
  }

  private onEvent(ev: WatchEvent): void {
    // Events arrive in revision order; an older one is a re-delivery of something already here.
    if (ev.revision < this.applied) return;
    const change = this.applyKv(ev.kv.key, ev.type === 'put' ? ev.kv.value : null, ev.revision);
    this.applied = ev.revision;
    this.signal({ type: 'EVENT', revision: ev.revision });
    if (change) this.emit(change);
    this.settle();
  }

  private onResync(kvs: KeyValue[], revision: number): void {
    this.signal({ type: 'RESYNC_STARTED' });
    this.replace(kvs, revision);
    this.signal({ type: 'RESYNCED', revision });
    this.settle();
  }

  /** The whole notebook from a list at `revision`. */
  private replace(kvs: KeyValue[], revision: number): void {
    this.notesById.clear();
    this.rolesByUser.clear();
    this.keyRevisions.clear();
    for (const kv of kvs) this.applyKv(kv.key, kv.value, kv.modRevision);
    this.applied = revision;
    this.emit({ type: 'reset', revision });
  }

  /** value null: the key was deleted at `revision`. */
  private applyKv(key: string, value: unknown, revision: number): NoteChange | null {
    const known = this.keyRevisions.get(key);
    if (known !== undefined && known >= revision) return null;
    const parsed = parseNotebookKey(key);
    if (!parsed) return null;
    if (value !== null) this.keyRevisions.set(key, revision);
    else this.keyRevisions.delete(key);
    if (parsed.kind === 'roles') {
      const ok = value !== null && rolesProblems(value, parsed.user).length === 0;
      if (value !== null && !ok) this.ignore(key, rolesProblems(value, parsed.user));
      const roles = ok ? [...(value as UserRoles).roles] : [];
      if (roles.length) this.rolesByUser.set(parsed.user, roles);
      else if (!this.rolesByUser.delete(parsed.user)) return null;
      return { type: 'roles', user: parsed.user, roles, revision };
    }
    const prev = this.notesById.get(parsed.id) ?? null;
    const problems = value === null ? [] : noteProblems(value);
    if (problems.length) this.ignore(key, problems);
    const note = value === null || problems.length ? null : deepFreeze(value as Note);
    if (note) this.notesById.set(parsed.id, note);
    else if (!this.notesById.delete(parsed.id)) return null;
    return { type: 'note', id: parsed.id, note, prev, revision };
  }

  private ignore(key: string, problems: string[]): void {
    this.ignoredValues++;
    this.log.warn({ key, problems }, 'note sync: ignoring a value that is not notebook data');
  }

  private emit(change: NoteChange): void {
    for (const fn of [...this.listeners]) {
      try {
        fn(change);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'note sync: a change listener threw');
      }
    }
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const at = this.revision;
    const [done, waiting] = partition(this.waiters, (w) => w.revision <= at);
    this.waiters = waiting;
    for (const w of done) {
      this.clock.clearTimeout(w.timer);
      w.resolve();
    }
  }

  private poll(): void {
    if (this.state === 'reconnecting' && this.watcher?.member) this.signal({ type: 'WATCH_OK' });
    this.settle();
  }
}

// ---- helpers ------------------------------------------------------------------------------------

function toNoteError(r: Extract<MetaResult, { ok: false }>): Error {
  if (r.code === 'rejected') {
    const refusal = parseRefusal(r.message);
    if (refusal) return new NoteError(refusal.kind, refusal.text, r.revision);
  }
  if (r.code === 'casFailed') return new NoteError('conflict', `${r.message}: the note changed meanwhile`, r.revision);
  if (r.code === 'tooLarge') return new NoteError('tooLarge', r.message, r.revision);
  return new MetaError(r.code, r.message, r.revision);
}

/** Zeppelin-style note id: 9 characters of [2-9A-Z]. */
export function newNoteId(): string {
  const alphabet = '23456789ABCDEFGHJKLMNPQRSTUVWXYZ';
  return [...randomBytes(9)].map((b) => alphabet[b % alphabet.length]).join('');
}

export function newParagraphId(): string {
  return `paragraph_${Date.now()}_${randomBytes(4).readUInt32BE(0)}`;
}

/** Stored values must hold no undefined (replicas would disagree on absent vs undefined). */
function stripUndefined<T>(v: T): T {
  if (Array.isArray(v)) return v.map(stripUndefined) as T;
  if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return v;
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, stripUndefined(x)])) as T;
}

function deepFreeze<T>(v: T): T {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return v;
  for (const x of Object.values(v)) deepFreeze(x);
  return Object.freeze(v);
}

function partition<T>(xs: T[], pred: (x: T) => boolean): [T[], T[]] {
  const yes: T[] = [];
  const no: T[] = [];
  for (const x of xs) (pred(x) ? yes : no).push(x);
  return [yes, no];
}
