/** A mistake in how a command was called: its message is printed, and the exit code is 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * A command that ran and failed for a reason its message tells whole (a server that cannot be
 * reached, a job that does not exist): the message is printed without a stack, and the exit code is 1.
 */
export class CommandFailedError extends Error {
  override name = 'CommandFailedError';
}
