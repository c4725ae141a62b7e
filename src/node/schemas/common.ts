import { type TObject, type TProperties, Type } from "@sinclair/typebox";

/**
 * Pieces every node route schema shares. Responses whose shape is open (records that grow fields
 * as the platform does) say `additionalProperties: true`, so serializing through the schema never
 * drops a field a client reads.
 */

/** `{error, code}`: every node error body (src/node/errors.ts). */
export const NodeError = Type.Object(
  { error: Type.String(), code: Type.String() },
  { additionalProperties: true },
);

/** The error answers every authenticated route may give. */
export const errorResponses = { "4xx": NodeError, "5xx": NodeError } as const;

/** An object whose listed fields are documented and whose others pass through unchanged. */
export function open<T extends TProperties>(properties: T, description?: string): TObject<T> {
  return Type.Object(properties, { additionalProperties: true, ...(description ? { description } : {}) });
}

/** Any JSON object: for bodies a format parser checks (app records, specs). */
export const AnyObject = Type.Object({}, { additionalProperties: true });

type Security = { [scheme: string]: string[] }[];
export const nodeKey: Security = [{ nodeKey: [] }];
export const nodeKeyOrTenant: Security = [{ nodeKey: [] }, { tenantToken: [] }];

export const AppParams = Type.Object({
  app: Type.String({ description: "The app's name (or uuid where the registry accepts it)" }),
});

export const Uuid = Type.String({
  pattern: "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
});

export const NullableString = Type.Union([Type.String(), Type.Null()]);

/** A whole number in a query string, as text (queries are never coerced). */
export function wholeNumber(name: string, max: number, digits = 16) {
  return Type.String({
    pattern: `^[0-9]{1,${digits}}$`,
    "x-message": `${name} must be a whole number up to ${max}`,
  });
}
