import { TabbifyError } from "../core/errors.js";

/** Reading a token without it touching argv, the screen or the shell history. */

const MAX_TOKEN_BYTES = 16 * 1024;

/** The first line of stdin (CI: `printf '%s\n' "$T" | tcli login --token-stdin`), trimmed. */
export async function readStdinToken(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
    size += buf.length;
    if (size > MAX_TOKEN_BYTES)
      throw new TabbifyError("USAGE", `the token on stdin is over ${MAX_TOKEN_BYTES} bytes`);
    chunks.push(buf);
  }
  return (Buffer.concat(chunks).toString("utf8").split(/\r?\n/)[0] ?? "").trim();
}

/** Prompts on `out` and reads one line from a TTY with echo off. Ctrl-C aborts. */
export function readHiddenLine(
  prompt: string,
  stdin: NodeJS.ReadStream,
  out: NodeJS.WritableStream,
): Promise<string> {
  out.write(prompt);
  return new Promise((resolve, reject) => {
    let value = "";
    stdin.setRawMode(true);
    stdin.resume();
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      out.write("\n");
      if (err) reject(err);
      else resolve(value.trim());
    };
    const onData = (data: Buffer) => {
      for (const ch of data.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return done();
        if (ch === "\u0003") return done(new TabbifyError("USAGE", "login cancelled"));
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on("data", onData);
  });
}

/** One y/N answer from a TTY; anything but y or yes is no. */
export async function askYes(
  prompt: string,
  stdin: NodeJS.ReadStream,
  out: NodeJS.WritableStream,
): Promise<boolean> {
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: stdin, output: out });
  try {
    return /^y(es)?$/i.test((await rl.question(prompt)).trim());
  } finally {
    rl.close();
  }
}
