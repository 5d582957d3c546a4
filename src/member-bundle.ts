/**
 * How launchers start a member process. Local clusters (npm start, tests, benchmarks, chaos) run
 * members from one esbuild bundle of src/member-entry.ts in `.build/` (our code bundled, packages
 * left to node_modules) instead of through tsx: the TypeScript loader costs each member ~35 MB of
 * RSS and start-up time. The bundle is rebuilt from the sources whenever a launcher starts (~0.1 s;
 * named by its content hash, so concurrent launchers and stale files cannot mix versions).
 * SUBMARINE_MEMBER_TSX=1 runs members through tsx instead (profilers that patch our modules).
 *
 * Members run with V8's default young-generation semi-space (16 MB here). A 2 MB one saved 14-30 MB
 * of RSS per member under a 64-client load of a small state, but with a million keys it tripled the
 * time spent in garbage collection (15-22 s vs 5-7 s per member over a million puts) and the
 * event-loop stalls that come with it; SUBMARINE_MEMBER_NODE_FLAGS='--max-semi-space-size=2' brings
 * it back where memory matters more.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './paths.ts';

const ROOT = packageRoot(import.meta.url);
const BUILD_DIR = join(ROOT, '.build');

/** Node arguments, before the member's own flags, that run a member through tsx. */
export const TSX_MEMBER_ARGS: readonly string[] = ['--import=tsx', join(ROOT, 'src/cli.ts'), 'node'];
/** SUBMARINE_MEMBER_NODE_FLAGS (space-separated) replaces them, e.g. to measure another semi-space size. */
const NODE_FLAGS = process.env.SUBMARINE_MEMBER_NODE_FLAGS !== undefined
  ? process.env.SUBMARINE_MEMBER_NODE_FLAGS.split(/\s+/).filter(Boolean)
  : [];

let built: Promise<readonly string[]> | null = null;

/** Node arguments, before the member's own flags, that run a member (the bundle when it builds). */
export function memberLaunchArgs(onFallback?: (err: Error) => void): Promise<readonly string[]> {
  if (process.env.SUBMARINE_MEMBER_TSX === '1') return Promise.resolve(TSX_MEMBER_ARGS);
  built ??= bundleMember().then(
    (file) => [...NODE_FLAGS, file],
    (err: Error) => {
      onFallback?.(err);
      return TSX_MEMBER_ARGS;
    },
  );
  return built;
}

/** Builds the bundle; returns its path. */
export async function bundleMember(): Promise<string> {
  const { build } = await import('esbuild');
  const out = await build({
    entryPoints: [join(ROOT, 'src/member-entry.ts')],
    bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external',
    write: false, logLevel: 'silent', keepNames: true, legalComments: 'none',
  });
  const code = out.outputFiles[0]!.contents;
  const name = `member-${createHash('sha256').update(code).digest('hex').slice(0, 16)}.mjs`;
  const file = join(BUILD_DIR, name);
  mkdirSync(BUILD_DIR, { recursive: true });
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, code);
    renameSync(tmp, file);
  }
  prune(name);
  return file;
}

/** Removes other bundles not touched for an hour (a launcher of an older version may still use a recent one). */
function prune(keep: string): void {
  const cutoff = Date.now() - 3600_000;
  for (const f of readdirSync(BUILD_DIR)) {
    if (f === keep || !f.startsWith('member-')) continue;
    try {
      if (statSync(join(BUILD_DIR, f)).mtimeMs < cutoff) unlinkSync(join(BUILD_DIR, f));
    } catch {
      // raced with another launcher's prune
    }
  }
}
