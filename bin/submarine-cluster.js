#!/usr/bin/env node
// Runs the TypeScript CLI in this process through tsx's loader (a runtime dependency), so signals
// such as SIGTERM reach the CLI itself.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
