import type { OutgoingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import type { FastifyReply } from "fastify";

/**
 * Writes a blob stream to the socket ourselves instead of through `reply.send`: each chunk is
 * handed back to the stream (`recycle`, when it has one) once the socket has taken it, so a
 * local-disk read reuses its buffers instead of allocating 1 MiB per read (see FileRangeStream).
 * The app registers no onSend hook, so the status and headers set on `reply` are the whole reply.
 */
export async function sendBlobStream(reply: FastifyReply, stream: Readable): Promise<void> {
  const recycle = (stream as Partial<Recycling>).recycle?.bind(stream);
  const res = reply.raw;
  reply.hijack();
  res.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders);
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => {
      res.write(chunk, (err) => (err ? reject(err) : resolve()));
    });
  try {
    for await (const chunk of stream) {
      await write(chunk as Buffer);
      recycle?.(chunk as Buffer);
    }
    res.end();
  } catch {
    // The client went away or the storage read failed: the status line is sent, so all that
    // is left is to cut the connection, which tells the client the body is incomplete.
    stream.destroy();
    res.destroy();
  }
}

interface Recycling {
  recycle(chunk: Buffer): void;
}
