import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance, FastifyRequest, FastifyServerOptions, RouteOptions } from "fastify";

/**
 * What every Tabbify HTTP API shares about its description: route schemas are the one source of
 * validation, serialization, the OpenAPI document (`GET /openapi.json`, unauthenticated) and the
 * reference page (`GET /docs`, Swagger UI served from this process under a strict CSP).
 *
 * A route schema may carry `x-error-code`: the API's stable code a schema failure on that route
 * answers with (e.g. DEPLOY_REQUEST_INVALID); a property schema may carry `x-message`, the
 * sentence the caller reads when that property fails (or an object of sentences keyed by the
 * failing keyword, with `default`; `{field}` becomes the property's path, e.g.
 * `targets[0].runtime`), and `x-required` the one for its absence; a property's own
 * `x-error-code` wins over the route's (a contract field answers CONTRACT_INVALID on a route whose
 * other fields answer BAD_REQUEST). So today's messages and codes survive validation moving into
 * schemas.
 */

/** Tag of routes registered without any schema: the completeness test names them. */
export const UNDESCRIBED_TAG = "undescribed";

/** Paths served by describeApi itself, unauthenticated like `/health`. */
export const DOCS_PATHS = ["/openapi.json", "/docs"] as const;

/** Whether a matched route is the document or the reference page (for APIs that auth by hook). */
export function isDocsRoute(route: string | undefined): boolean {
  return route === "/openapi.json" || route === "/docs" || (route?.startsWith("/docs/") ?? false);
}

/**
 * Ajv as every API uses it: no type coercion (a number is not a string), unknown fields refused
 * where a schema says so rather than stripped, and the failing schema kept on each error so
 * `x-message` can be read.
 */
export const schemaAjv: NonNullable<FastifyServerOptions["ajv"]> = {
  customOptions: {
    coerceTypes: false,
    removeAdditional: false,
    useDefaults: true,
    allErrors: false,
    verbose: true,
    keywords: ["x-message", "x-required", "x-error-code"],
  },
};

export interface SecurityScheme {
  name: string;
  description: string;
  /** Default bearer. */
  scheme?: "bearer" | "basic";
  /** A cookie of this name instead of an Authorization header (the dashboard's session). */
  cookie?: string;
  /** A credential in this request header instead of `Authorization` (an API key scheme). */
  header?: string;
}

export interface DescribeOptions {
  title: string;
  version: string;
  description: string;
  /** Bearer schemes this API accepts (node key, tenant token, supervisor key...). */
  security: SecurityScheme[];
}

/**
 * Registers the OpenAPI generator, `GET /openapi.json` and `GET /docs`. Await it before any
 * route is registered: routes registered earlier are not seen (fastify's onRoute runs once).
 */
export async function describeApi(app: FastifyInstance, opts: DescribeOptions): Promise<void> {
  // Before swagger's own hook, so it documents the tag: a route without a schema stays visible.
  app.addHook("onRoute", (route: RouteOptions) => {
    if (!route.schema) route.schema = { tags: [UNDESCRIBED_TAG], summary: "no schema yet" };
  });
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: { title: opts.title, version: opts.version, description: opts.description },
      components: {
        securitySchemes: Object.fromEntries(
          opts.security.map((s) => [
            s.name,
            s.cookie
              ? { type: "apiKey" as const, in: "cookie" as const, name: s.cookie, description: s.description }
              : s.header
                ? {
                    type: "apiKey" as const,
                    in: "header" as const,
                    name: s.header,
                    description: s.description,
                  }
                : { type: "http" as const, scheme: s.scheme ?? "bearer", description: s.description },
          ]),
        ),
      },
    },
  });
  await app.register(swaggerUi, {
    routePrefix: "/docs",
    // Everything the page loads is served from here; nothing inline, nothing from elsewhere.
    staticCSP:
      "default-src 'self'; base-uri 'self'; font-src 'self' data:; frame-ancestors 'none'; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self'; form-action 'self'",
    uiConfig: { url: "/openapi.json", deepLinking: false, validatorUrl: null },
  });
  let document: unknown;
  app.get("/openapi.json", { schema: { hide: true } }, async (_req, reply) => {
    document ??= app.swagger();
    return reply.header("cache-control", "no-cache").send(document);
  });
}

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  parentSchema?: Record<string, unknown>;
}

/** `/targets/0/supervisor` → `targets[0].supervisor`. */
function fieldName(instancePath: string): string {
  return instancePath
    .split("/")
    .slice(1)
    .map((part) => part.replaceAll("~1", "/").replaceAll("~0", "~"))
    .reduce((out, part) => (/^\d+$/.test(part) ? `${out}[${part}]` : out ? `${out}.${part}` : part), "");
}

const WHOLE: Record<string, string> = {
  body: "the body",
  querystring: "the query",
  params: "the path",
  headers: "the headers",
};

/** A schema's own sentence for a failure: `x-message` whole, or keyed by the failing keyword. */
function sentenceOf(error: AjvError): string | undefined {
  const custom = error.parentSchema?.["x-message"];
  if (typeof custom === "string") return custom;
  if (typeof custom === "object" && custom !== null) {
    const byKeyword = custom as Record<string, unknown>;
    const sentence = byKeyword[error.keyword] ?? byKeyword.default;
    if (typeof sentence === "string") return sentence;
  }
  return undefined;
}

/** The sentence a caller reads for one schema failure. */
export function schemaMessage(error: AjvError, context: string): string {
  const field = fieldName(error.instancePath);
  if (error.keyword === "required") {
    const missing = String(error.params.missingProperty);
    const properties = error.parentSchema?.properties as Record<string, Record<string, unknown>> | undefined;
    const custom = properties?.[missing]?.["x-required"];
    if (typeof custom === "string") return custom;
    return `${field ? `${field}.` : ""}${missing} is required`;
  }
  const custom = sentenceOf(error);
  if (custom !== undefined) return custom.replaceAll("{field}", field);
  if (error.keyword === "additionalProperties") {
    return `${field || WHOLE[context] || context}: unknown field ${String(error.params.additionalProperty)}`;
  }
  if (field === "" && error.keyword === "type" && context === "body") {
    return `the body must be a JSON ${String(error.params.type)}`;
  }
  return `${field || WHOLE[context] || context} ${error.message ?? "is invalid"}`;
}

/**
 * A fastify schema failure as `{code, message}` in the API's terms, or undefined when `err` is no
 * schema failure. The code is the route's `x-error-code`, else `fallback`.
 */
export function schemaFailure(
  err: unknown,
  req: FastifyRequest,
  fallback: string,
): { code: string; message: string } | undefined {
  const e = err as { validation?: AjvError[]; validationContext?: string };
  if (!Array.isArray(e.validation) || e.validation.length === 0) return undefined;
  const schema = req.routeOptions.schema as Record<string, unknown> | undefined;
  const routeCode = schema?.["x-error-code"];
  // A union's branches each fail before the union does: the first failure with a sentence of its
  // own says it best, else the first failure.
  const failure = e.validation.find((v) => sentenceOf(v) !== undefined) ?? e.validation[0]!;
  const propertyCode = codeOf(failure);
  return {
    code: propertyCode ?? (typeof routeCode === "string" ? routeCode : fallback),
    message: schemaMessage(failure, e.validationContext ?? "body"),
  };
}

/** A property's own `x-error-code` (for its absence: the missing property's). */
function codeOf(error: AjvError): string | undefined {
  const owner =
    error.keyword === "required"
      ? (error.parentSchema?.properties as Record<string, Record<string, unknown>> | undefined)?.[
          String(error.params.missingProperty)
        ]
      : error.parentSchema;
  const code = owner?.["x-error-code"];
  return typeof code === "string" ? code : undefined;
}
