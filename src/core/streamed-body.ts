/**
 * A request body the typed clients send as it is read (a release tarball, a blob): never buffered
 * whole. `length` goes out as Content-Length, so a server can refuse an oversized upload before
 * reading it. (No Node module is imported here: the dashboard's bundle holds the clients too.)
 */
export interface StreamedBody {
  stream: ReadableStream<Uint8Array>;
  contentType: string;
  length: number;
}

/** The fetch init fields that send `body`: Node's fetch wants `duplex: "half"` for a stream. */
export function streamedInit(
  body: StreamedBody,
  headers: Record<string, string>,
): { body: ReadableStream<Uint8Array>; duplex: "half" } {
  headers["content-type"] = body.contentType;
  headers["content-length"] = String(body.length);
  return { body: body.stream, duplex: "half" };
}
