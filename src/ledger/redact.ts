/**
 * What may enter an audit event. Secret values never do: an `env` map becomes the sorted list
 * of its names, fields that hold credentials (tokens, secrets, passwords, keys, authorization)
 * are dropped, URLs lose their userinfo, and any string containing a value the node knows to be
 * secret is replaced whole. Applied by the chain on every append, so no caller can forget it.
 */

const CREDENTIAL_FIELD =
  /(token|secret|passw(or)?d|authorization|credential|cookie|signature|private|(^|[_-])key$|^key$|apikey)/i;
const ENV_FIELD = /^(env|extra_env|environment_values|env_values)$/i;
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi;

export const REDACTED = "[redacted]";

export interface RedactOptions {
  /** Values that must never appear anywhere (node key, webhook secrets…). Empty strings ignored. */
  secretValues?: readonly string[];
}

export function redactForAudit<T>(value: T, opts: RedactOptions = {}): T {
  const secrets = (opts.secretValues ?? []).filter((s) => typeof s === "string" && s.length >= 4);
  return walk(value, secrets) as T;
}

function walk(value: unknown, secrets: readonly string[]): unknown {
  if (typeof value === "string") return scrubString(value, secrets);
  if (Array.isArray(value)) return value.map((v) => walk(v, secrets));
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value as Record<string, unknown>)) {
    if (inner === undefined) continue;
    if (ENV_FIELD.test(key) && typeof inner === "object" && inner !== null && !Array.isArray(inner)) {
      out[key] = Object.keys(inner).sort();
      continue;
    }
    if (CREDENTIAL_FIELD.test(key)) continue;
    out[key] = walk(inner, secrets);
  }
  return out;
}

function scrubString(text: string, secrets: readonly string[]): string {
  for (const secret of secrets) if (text.includes(secret)) return REDACTED;
  return text.replace(URL_USERINFO, "$1");
}
