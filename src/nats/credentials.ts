/**
 * Broker credentials: members (full access), clients (no Raft subjects) and the routes between
 * broker servers. Kept in one JSON file, readable by its owner only, so a restarted cluster and
 * its members agree on them.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface UserPass {
  user: string;
  pass: string;
}

export interface NatsCredentials {
  member: UserPass;
  client: UserPass;
  route: UserPass;
}

const ROLES = ['member', 'client', 'route'] as const;

const secret = (): string => randomBytes(24).toString('base64url');

export function generateCredentials(): NatsCredentials {
  // Random user names too: nothing about the broker is guessable from the project's source.
  return {
    member: { user: `member-${secret().slice(0, 12)}`, pass: secret() },
    client: { user: `client-${secret().slice(0, 12)}`, pass: secret() },
    route: { user: `route-${secret().slice(0, 12)}`, pass: secret() },
  };
}

export class CredentialsFileError extends Error {
  override name = 'CredentialsFileError';
}

function validate(file: string, value: unknown): NatsCredentials {
  const bad = (why: string) =>
    new CredentialsFileError(`${file}: invalid NATS credentials file (${why}); fix it or delete it to generate new credentials`);
  if (typeof value !== 'object' || value === null) throw bad('not a JSON object');
  const v = value as Record<string, unknown>;
  for (const role of ROLES) {
    const up = v[role] as Record<string, unknown> | undefined;
    if (typeof up !== 'object' || up === null) throw bad(`missing "${role}"`);
    for (const k of ['user', 'pass'] as const) {
      if (typeof up[k] !== 'string' || up[k].length === 0) throw bad(`"${role}.${k}" must be a non-empty string`);
    }
  }
  const users = new Set(ROLES.map((r) => (v[r] as UserPass).user));
  // Member and client users share one user list in the server: equal names would be ambiguous.
  if (users.size !== ROLES.length) throw bad('user names must be distinct');
  const pick = (r: (typeof ROLES)[number]): UserPass => ({ user: (v[r] as UserPass).user, pass: (v[r] as UserPass).pass });
  return { member: pick('member'), client: pick('client'), route: pick('route') };
}

/**
 * Reads `file`, or creates it (and its directories) with fresh credentials, mode 0600.
 * Synchronous: it runs once at startup, before anything else can proceed.
 */
export function loadOrCreateCredentials(file: string): NatsCredentials {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const creds = generateCredentials();
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    try {
      // 'wx': if another process created it meanwhile, use theirs rather than overwrite it.
      writeFileSync(file, JSON.stringify(creds, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
      return creds;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      text = readFileSync(file, 'utf8');
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CredentialsFileError(`${file}: invalid NATS credentials file (not JSON: ${(err as Error).message}); fix it or delete it to generate new credentials`);
  }
  return validate(file, parsed);
}
