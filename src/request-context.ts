/**
 * The request a piece of work runs for, carried by AsyncLocalStorage: the logger's mixin adds its
 * id to every line written while serving it (in the pipeline and engines too, which know nothing of
 * HTTP), so one grep of an `X-Request-Id` finds the whole story of a request.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface RequestContext {
  requestId: string;
}

export const requestContext = new AsyncLocalStorage<RequestContext>();
