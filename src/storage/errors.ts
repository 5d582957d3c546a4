/** Typed storage errors: each carries what an operator needs to find the damage. */

/**
 * Damage that is not a torn last write: a bad record followed by valid data, a bad record
 * in a non-last segment, a missing segment, a bad snapshot or term file. Recovery refuses
 * to guess, because silently skipping a record could drop acknowledged Raft state.
 */
export class WalCorruptionError extends Error {
  override readonly name = 'WalCorruptionError';
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`storage corruption in ${file} at byte ${offset}: ${reason}`);
  }
}

/** A persist batch that breaks the log's shape (gap, rewrite of compacted entries). */
export class StorageUsageError extends Error {
  override readonly name = 'StorageUsageError';
}

/**
 * A write or fsync failed earlier. After a failed fsync the page cache state is unknown
 * ("fsyncgate"), so the storage refuses all further writes instead of retrying.
 */
export class StorageFailedError extends Error {
  override readonly name = 'StorageFailedError';
  constructor(cause: unknown) {
    super(`storage failed earlier and refuses further writes: ${String((cause as Error)?.message ?? cause)}`, { cause });
  }
}

export class StorageClosedError extends Error {
  override readonly name = 'StorageClosedError';
  constructor() {
    super('storage is closed');
  }
}
