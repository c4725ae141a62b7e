import type { FastifyInstance } from "fastify";

/**
 * Makes `instance` read every request body as JSON, whatever its content type says: the APIs the
 * README drives with `curl -d '{…}'` (which sends application/x-www-form-urlencoded) must not
 * answer 415. Bad JSON is still a 400.
 */
export function acceptJsonWhateverContentType(instance: FastifyInstance): void {
  const json = instance.getDefaultJsonParser("error", "error");
  instance.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, json);
  instance.addContentTypeParser("*", { parseAs: "string" }, json);
}
