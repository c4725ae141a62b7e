/**
 * The shape of a UUID (8-4-4-4-12 hex digits), for ids that are not app UUIDs or that must be
 * told apart from names; an app UUID from a caller goes through parseAppUuid (address.ts), which
 * also checks the version and variant.
 */
const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a UUID in either case. */
export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID_SHAPE.test(value);
}

/** True only for a UUID in lowercase: the form ids are stored and compared in. */
export function isLowercaseUuid(value: unknown): value is string {
  return isUuid(value) && value === value.toLowerCase();
}
