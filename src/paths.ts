import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's root directory, found by walking up from a module's URL to our package.json.
 * Works the same from the TypeScript sources and from the member bundle in `.build/`.
 */
export function packageRoot(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'submarine-cluster') return dir;
      } catch {
        // not ours (or unreadable): keep looking
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`submarine-cluster's package.json not found above ${fileURLToPath(moduleUrl)}`);
    dir = up;
  }
}
