import type { FastifyRequest } from "fastify";

/**
 * Authentication as a route's `onRequest` hook, so it runs before fastify parses and validates
 * the body: a stranger's malformed body is answered 401, never with what is wrong with it. The
 * handler reads the caller the hook resolved with `caller(req)`.
 *
 *   const who = callerFirst((req) => callers.resolve(req.headers.authorization));
 *   app.post(path, { schema, onRequest: who.onRequest }, async (req) => use(who.caller(req)));
 */
export interface CallerFirst<C> {
  onRequest: (req: FastifyRequest) => Promise<void>;
  caller: (req: FastifyRequest) => C;
}

export function callerFirst<C>(resolve: (req: FastifyRequest) => Promise<C> | C): CallerFirst<C> {
  const resolved = new WeakMap<FastifyRequest, { caller: C }>();
  return {
    onRequest: async (req) => {
      resolved.set(req, { caller: await resolve(req) });
    },
    caller: (req) => {
      const entry = resolved.get(req);
      if (!entry) throw new Error(`${req.method} ${req.url}: the route has no callerFirst onRequest hook`);
      return entry.caller;
    },
  };
}
