/** Invariant violations are bugs: fail loudly with context instead of corrupting the log. */
export class InvariantError extends Error {
  constructor(message: string, readonly context?: unknown) {
    super(context === undefined ? message : `${message} ${JSON.stringify(context)}`);
    this.name = 'InvariantError';
  }
}

export function assert(cond: unknown, message: string, context?: unknown): asserts cond {
  if (!cond) throw new InvariantError(message, context);
}
