/**
 * The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, blanks around
 * the token allowed), or undefined when the header is absent or not of that form.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  return /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)?.[1];
}
