import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { StreamedBody } from "./streamed-body.js";

/** A file on disk as a streamed body. */
export async function fileBody(
  path: string,
  contentType = "application/octet-stream",
): Promise<StreamedBody> {
  const length = (await stat(path)).size;
  return {
    stream: Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>,
    contentType,
    length,
  };
}
