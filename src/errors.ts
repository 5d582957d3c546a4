/** Typed errors carrying what a caller needs to act on them. */
export class NotLeaderError extends Error {
  override name = 'NotLeaderError';
  constructor(readonly leader: string | null, message = leader ? `not the leader; try ${leader}` : 'not the leader; leader unknown') {
    super(message);
  }
}

/** The entry was replaced by another leader's entry at the same index: it was not applied. */
export class ProposalDroppedError extends Error {
  override name = 'ProposalDroppedError';
  constructor(readonly index: number) {
    super(`proposal at index ${index} was overwritten by a new leader; it did not take effect`);
  }
}

/** The outcome cannot be known here (e.g. a snapshot covered it): the caller must check. */
export class OutcomeUnknownError extends Error {
  override name = 'OutcomeUnknownError';
}

/**
 * The write's session is gone from the cluster (evicted as least recently used, or an acknowledged
 * seq) after an earlier attempt of this write may have been applied: its outcome is unknown. Not
 * retried (a retry under a new session could apply it twice); read the key to learn the outcome.
 */
export class SessionLostError extends OutcomeUnknownError {
  override name = 'SessionLostError';
}

export class MembershipError extends Error {
  override name = 'MembershipError';
}

export class NodeStoppedError extends Error {
  override name = 'NodeStoppedError';
  constructor(readonly id: string) {
    super(`node ${id} is stopped`);
  }
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

export class NoQuorumError extends Error {
  override name = 'NoQuorumError';
}

/** The metadata center refused a command (casFailed, tooLarge, noLease, badCommand, notObject). */
export class MetaError extends Error {
  override name = 'MetaError';
  constructor(readonly code: string, message: string, readonly revision?: number) {
    super(message);
  }
}

/** A watch asked for revisions the member no longer keeps: list again, then watch from there. */
export class CompactedError extends Error {
  override name = 'CompactedError';
  constructor(readonly revision: number, message = `revisions up to ${revision} are compacted: list again and watch from the listed revision`) {
    super(message);
  }
}

/** A request was malformed or not allowed; retrying it will not help. */
export class BadRequestError extends Error {
  override name = 'BadRequestError';
}

/**
 * The answer would not fit in one broker message (max_payload). A write was still applied: the
 * message says at which log index; read the key for its outcome.
 */
export class ReplyTooLargeError extends Error {
  override name = 'ReplyTooLargeError';
}
